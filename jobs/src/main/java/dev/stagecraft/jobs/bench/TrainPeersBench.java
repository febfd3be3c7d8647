package dev.stagecraft.jobs.bench;

import static org.apache.spark.sql.functions.col;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.Workspace;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.Consumer;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * {@code bench train-peers}: the {@code train} step against PyTorch DDP launched by Spark's TorchDistributor (what a
 * Spark user would pick instead), on a9a replicated 10× (325,600 rows × 123 features) with a9a's test file as the
 * validation set, the same model (MLP [64] and logistic), Adam, global batch, learning rate and seed, 2 workers with
 * one intra-op thread each.
 *
 * <p>What is compared is the wall time to a validation accuracy within 0.5 pt of the best final accuracy of the
 * sides. TorchDistributor's script reports its accuracy after every epoch with the seconds since its {@code run()}
 * call (its SparkSession already started). Ours measures validation accuracy once, after training; so ours is run
 * once per epoch count (1 … E, each a whole step: standardisation, shards, training, validation, the bundle written),
 * and its time to the target is the wall time of the shortest run that reaches it. Every epoch count is timed; none is
 * chosen after the fact. Ours runs two ways: as its own application, spark-submitted from a Spark distribution as a
 * user runs it and timed from spark-submit's start to its exit (JVM and SparkSession start included, which the peer's
 * figure leaves out), and in this JVM's application after one untimed warm-up run.
 */
final class TrainPeersBench {
  static final int EPOCHS = 5;
  static final int GLOBAL_BATCH = 1024;
  static final long SEED = 7;
  static final double WITHIN = 0.005;
  /** The driver's heap of ours as its own application: what bin/stagecraft gives the in-process side. */
  static final String DRIVER_MEMORY = "4g";

  private TrainPeersBench() {}

  static void run(SparkSession spark, int workers, double scale, Consumer<ObjectNode> out) throws Exception {
    TrainBench.requireOneIntraOpThread(spark, "train-peers"); // as params says, and as the peer's workers have
    PeerEnv peers = PeerEnv.get();
    Submitted submit = Submitted.find("train-peers");
    Path dir = Bench.scratch("stagecraft-train-peers");
    int times = (int) Math.max(1, Math.round(10 * scale));
    String train = TrainBench.a9a(spark, dir, times);
    String validation = TrainBench.a9a(spark, dir, "a9a.t.libsvm", 1);
    String trainArrays = arrays(spark, dir, train, "train");
    String validationArrays = arrays(spark, dir, validation, "validation");
    long rows = spark.read().parquet(train).count();

    TrainBench.train(spark, dir, TrainBench.a9a(spark, dir, 1), workers, spec("mlp", 1, "0.001"), "validation: \""
        + validation + "\""); // warm-up: JIT, DJL's engine, the barrier scheduler

    for (String[] m : new String[][] {{"mlp64", "mlp", "0.001"}, {"logistic", "logistic", "0.01"}}) {
      String lr = m[2];
      JsonNode peer = peers.run("train_torch_distributor.py", "--train", localPath(trainArrays), "--validation",
          localPath(validationArrays), "--model", m[0], "--epochs", Integer.toString(EPOCHS), "--global-batch",
          Integer.toString(GLOBAL_BATCH), "--lr", lr, "--seed", Long.toString(SEED), "--workers",
          Integer.toString(workers), "--out", dir.resolve("peer-" + m[0]).toString());

      String step = "validation: \"" + validation + "\"";
      Curve app = new Curve();
      Curve inProcess = new Curve();
      for (int e = 1; e <= EPOCHS; e++) {
        String model = spec(m[1], e, lr);
        String runId = "app-" + m[0] + "-" + e;
        Path workflow = dir.resolve(runId + ".yaml");
        Files.writeString(workflow, TrainBench.workflow(TrainBench.trainStep(train, workers, model, step)));
        String ws = dir.resolve("ws-app").toUri().toString();
        Submitted.Usage u = submit.run("local[" + workers + "]", List.of("--driver-memory", DRIVER_MEMORY),
            List.of("run", workflow.toString(), "--run-id", runId, "--workspace", ws), dir.resolve(runId + ".log"));
        StepRecord r = new LedgerStore(new Workspace(ws, new Configuration())).read(runId)
            .orElseThrow(() -> new IllegalStateException("train-peers: run " + runId + " left no ledger"))
            .step("fit");
        app.add(e, u.seconds(), u.cpuSeconds(), r).put("peak_rss_mb", Bench.round(u.peakRssMb(), 1))
            .put("step_seconds", Bench.round(r.metrics().getOrDefault("fit_seconds", Double.NaN), 3));

        Duration cpu0 = Procs.cpuTime();
        long t0 = System.nanoTime();
        r = TrainBench.train(spark, dir, train, workers, model, step);
        inProcess.add(e, (System.nanoTime() - t0) / 1e9, Procs.cpuTime().minus(cpu0).toNanos() / 1e9, r);
        Bench.log("train-peers: {} ours, {} epoch(s): own application {} s (step {} s), in-process {} s, "
            + "validation accuracy {}", m[0], e, Bench.round(u.seconds(), 2),
            Bench.round(r.metrics().getOrDefault("fit_seconds", Double.NaN), 2),
            Bench.round(inProcess.seconds[e], 2), inProcess.accuracy[e]);
      }
      double peerFinal = peer.path("final_val_accuracy").asDouble();
      double target = Math.max(Math.max(app.accuracy[EPOCHS], inProcess.accuracy[EPOCHS]), peerFinal) - WITHIN;
      double peerSeconds = Double.NaN;
      int peerEpochs = -1;
      for (JsonNode point : peer.path("curve")) {
        if (point.path("val_accuracy").asDouble() >= target) {
          peerSeconds = point.path("seconds").asDouble();
          peerEpochs = point.path("epoch").asInt();
          break;
        }
      }

      ObjectNode line = Results.line("train-peers");
      line.putObject("params").put("model", m[0]).put("rows", rows).put("features", 123).put("workers", workers)
          .put("intra_op_threads", 1).put("global_batch", GLOBAL_BATCH).put("lr", Double.parseDouble(lr))
          .put("optimizer", "adam").put("epochs", EPOCHS).put("seed", SEED)
          .put("target_accuracy", Bench.round(target, 5)).put("within", WITHIN);
      line.set("ours", app.json("train step as its own application: spark-submit --master local[" + workers
          + "] of the shaded jar, timed from spark-submit's start to its exit (JVM, SparkSession, step, ledger)",
          target));
      line.set("ours_in_process", inProcess.json("train step in this benchmark's application (warm)", target));
      // The peer's whole application, as ours is timed: from its script's start (Python, the SparkSession).
      double peerProcessSeconds = peerSeconds + peer.path("run_called_seconds").asDouble(Double.NaN);
      ObjectNode peers0 = line.putObject("peers");
      ObjectNode p = (ObjectNode) peer.deepCopy();
      // The packages the peer's process reports (bin/peer-env pins them), in params.
      ((ObjectNode) line.get("params")).set("versions", p.remove("versions"));
      p.put("epochs_to_target", peerEpochs).put("seconds_to_target", Bench.round(peerSeconds, 3))
          .put("seconds_to_target_from_process_start", Bench.round(peerProcessSeconds, 3));
      peers0.set("torch_distributor", p);
      line.putObject("baseline").put("name", "torch_distributor")
          .put("seconds_to_target", Bench.round(peerSeconds, 3))
          .put("seconds_to_target_from_process_start", Bench.round(peerProcessSeconds, 3))
          .put("timed", "seconds_to_target: from TorchDistributor.run() (its SparkSession already up) to the end of "
              + "the first epoch whose validation accuracy reaches the target; seconds_to_target_from_process_start:"
              + " the same end, from the Python process's start");
      int appEpochs = app.epochsTo(target);
      int inEpochs = inProcess.epochsTo(target);
      // Whole applications on both sides, each from its process's start; in-process against the peer's run().
      line.put("speedup", appEpochs > 0 && peerEpochs > 0
          ? Bench.round(peerProcessSeconds / app.seconds[appEpochs], 3) : Double.NaN);
      line.put("speedup_in_process", inEpochs > 0 && peerEpochs > 0
          ? Bench.round(peerSeconds / inProcess.seconds[inEpochs], 3) : Double.NaN);
      line.put("same_answer", appEpochs > 0 && inEpochs > 0 && peerEpochs > 0);
      out.accept(line);
    }
  }

  /** Ours at each epoch count 1 … E: a whole run each, its wall time and validation accuracy. */
  private static final class Curve {
    final double[] seconds = new double[EPOCHS + 1];
    final double[] accuracy = new double[EPOCHS + 1];
    final ArrayNode runs = Results.JSON.createArrayNode();

    ObjectNode add(int epochs, double wall, double cpu, StepRecord r) {
      seconds[epochs] = wall;
      accuracy[epochs] = r.metrics().getOrDefault("validation_accuracy", Double.NaN);
      return runs.addObject().put("epochs", epochs).put("seconds", Bench.round(wall, 3))
          .put("val_accuracy", Bench.round(accuracy[epochs], 5)).put("cpu_seconds", Bench.round(cpu, 2))
          .put("train_loss", Bench.round(r.metrics().getOrDefault("train_loss", Double.NaN), 5));
    }

    /** The fewest epochs whose run reached {@code target}; -1 if none did. */
    int epochsTo(double target) {
      for (int e = 1; e <= EPOCHS; e++) {
        if (accuracy[e] >= target) {
          return e;
        }
      }
      return -1;
    }

    ObjectNode json(String name, double target) {
      int e = epochsTo(target);
      ObjectNode n = Results.JSON.createObjectNode().put("name", name).put("epochs_to_target", e)
          .put("seconds_to_target", e < 0 ? Double.NaN : Bench.round(seconds[e], 3))
          .put("final_val_accuracy", Bench.round(accuracy[EPOCHS], 5));
      n.set("runs", runs);
      return n;
    }
  }

  /** A model spec for {@code epochs} epochs. */
  private static String spec(String type, int epochs, String lr) {
    String hidden = type.equals("mlp") ? " hidden: [64]," : "";
    return "{ type: " + type + "," + hidden + " epochs: " + epochs + ", batch_size: " + GLOBAL_BATCH
        + ", optimizer: adam, lr: " + lr + ", seed: " + SEED + " }";
  }

  /** The same rows with {@code label} INT and {@code features} ARRAY<DOUBLE>, as the peer reads them. */
  static String arrays(SparkSession spark, Path dir, String vectors, String name) {
    String out = dir.resolve(name + "-arrays.parquet").toUri().toString();
    Dataset<Row> d = spark.read().parquet(vectors);
    d.select(col("label").cast("int").as("label"),
        org.apache.spark.ml.functions.vector_to_array(col("features"), "float64").as("features"))
        .write().mode("overwrite").parquet(out);
    return out;
  }

  private static String localPath(String uri) {
    return Path.of(java.net.URI.create(uri)).toString();
  }
}
