package dev.stagecraft.jobs.bench;

import static org.apache.spark.sql.functions.abs;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.max;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.function.Consumer;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * {@code bench inference-peers}: the {@code infer} step against what a Spark user would pick instead, on the same
 * Parquet (a9a replicated to ≥ 1M rows × 123 features), the same model as one ONNX graph made from the step's own
 * bundle (standardisation inside the graph), batches of 4096, the same 2 cores, Parquet written on every side:
 *
 * <ul>
 *   <li>{@code predict_batch_udf} (pyspark.ml.functions) with ONNX Runtime inside, Spark {@code local[2]};
 *   <li>Ray Data: {@code read_parquet} → {@code map_batches} (a callable class holding the ONNX Runtime session,
 *       concurrency 2) → {@code write_parquet}, 2 Ray CPUs;
 *   <li>ours: the {@code infer} step on the ONNX graph (ONNX Runtime), and on the bundle (DJL) in a second line.
 * </ul>
 *
 * Every side is timed warm (one untimed run, then the best and median of three), with its CPU seconds (process and
 * children) and peak RSS; every side's probabilities are checked against ours row by row (max |Δ| ≤ 1e-5, same
 * rows), and a side that disagrees fails the bench. The peers run in {@code bin/peer-env}'s venv; see the scripts in
 * {@code jobs/src/main/python/peers/} for each peer's method and the documentation page it follows.
 */
final class InferencePeersBench {
  static final double TOLERANCE = 1e-5;
  static final int RUNS = 3;
  static final List<String> PEERS = List.of("predict_batch_udf", "ray_data");

  private InferencePeersBench() {}

  static void run(SparkSession spark, double scale, Consumer<ObjectNode> out) throws Exception {
    PeerEnv peers = PeerEnv.get();
    Path dir = Bench.scratch("stagecraft-peers");
    int times = (int) Math.max(1, Math.round(31 * scale));
    int cores = spark.sparkContext().defaultParallelism();
    String train = TrainBench.a9a(spark, dir, 1);
    String small = InferenceBench.input(spark, dir, 1);
    String big = InferenceBench.input(spark, dir, times);
    long rows = (long) InferenceBench.A9A_ROWS * times;

    for (String[] m : new String[][] {
        {"mlp-256-256", "{ type: mlp, hidden: [256, 256], epochs: 1, batch_size: 1024, optimizer: adam, lr: 0.001 }"},
        {"logistic", "{ type: logistic, epochs: 2, batch_size: 256, optimizer: adam, lr: 0.01 }"}}) {
      StepRecord fit = TrainBench.train(spark, dir, train, 2, m[1]);
      String bundle = fit.outputs().get("model").uri();
      Path onnx = dir.resolve(m[0] + ".onnx");
      peers.run("bundle_to_onnx.py", Path.of(java.net.URI.create(bundle)).toString(), onnx.toString());

      Side oursOnnx = ours(spark, dir, onnx.toUri().toString(), small, big, true);
      Side oursDjl = ours(spark, dir, bundle, small, big, false);
      Bench.log("inference-peers: {} ours (ONNX Runtime) {} rows/s, (DJL) {} rows/s", m[0],
          Math.round(rows / oursOnnx.best()), Math.round(rows / oursDjl.best()));

      ObjectNode line = Results.line("inference-peers");
      ObjectNode params = line.putObject("params").put("rows", rows).put("features", 123).put("model", m[0])
          .put("batch_size", InferenceBench.BATCH).put("cores", cores).put("runs", RUNS)
          .put("tolerance", TOLERANCE);
      line.set("ours", oursOnnx.json(rows, "infer step, ONNX Runtime (the same graph as the peers)"));
      line.set("ours_djl", oursDjl.json(rows, "infer step, DJL on the bundle"));
      ObjectNode peerLines = line.putObject("peers");
      String best = null;
      double bestRate = 0;
      boolean same = true;
      for (String side : PEERS) {
        Path output = dir.resolve(m[0] + "-" + side);
        JsonNode r = peers.run("infer_peers.py", "--side", side, "--input", Path.of(java.net.URI.create(big))
            .toString(), "--onnx", onnx.toString(), "--output", output.toString(), "--batch",
            Integer.toString(InferenceBench.BATCH), "--cores", Integer.toString(cores), "--runs",
            Integer.toString(RUNS));
        ObjectNode p = (ObjectNode) r.deepCopy();
        // The packages the peer's process reports (bin/peer-env pins them), once per line, in params.
        params.set("versions", p.remove("versions"));
        Agreement a = agreement(spark, oursOnnx.output(), output.toUri().toString());
        p.put("max_abs_diff", a.maxAbsDiff()).put("rows_compared", a.rows()).put("same_answer", a.same(rows));
        peerLines.set(side, p);
        same &= a.same(rows);
        double rate = r.path("rows_per_second").asDouble();
        Bench.log("inference-peers: {} {} {} rows/s, max |Δp| {}", m[0], side, Math.round(rate), a.maxAbsDiff());
        if (rate > bestRate) {
          bestRate = rate;
          best = side;
        }
      }
      Agreement djl = agreement(spark, oursOnnx.output(), oursDjl.output());
      ((ObjectNode) line.get("ours_djl")).put("max_abs_diff", djl.maxAbsDiff());
      line.putObject("baseline").put("name", best).put("rows_per_second", Bench.round(bestRate, 1));
      line.put("speedup", Bench.round(rows / oursOnnx.best() / bestRate, 3));
      line.put("speedup_djl", Bench.round(rows / oursDjl.best() / bestRate, 3));
      line.put("same_answer", same);
      out.accept(line);
      if (!same) {
        throw new StagecraftException(ErrorCategory.INTERNAL, "bench inference-peers: a peer's predictions differ "
            + "from ours by more than " + TOLERANCE + " (see the line above)");
      }
    }
  }

  /** One side's timed runs: seconds of each, CPU seconds and peak RSS of the best, and the best run's output. */
  record Side(List<Double> seconds, double cpuSeconds, double peakRssMb, String output) {
    double best() {
      return Collections.min(seconds);
    }

    double median() {
      List<Double> s = new ArrayList<>(seconds);
      Collections.sort(s);
      return s.get(s.size() / 2);
    }

    ObjectNode json(long rows, String name) {
      ObjectNode o = Results.JSON.createObjectNode();
      o.put("name", name).put("rows_per_second", Bench.round(rows / best(), 1))
          .put("best_seconds", Bench.round(best(), 3)).put("median_seconds", Bench.round(median(), 3))
          .put("cpu_seconds", Bench.round(cpuSeconds, 2)).put("peak_rss_mb", Bench.round(peakRssMb, 1));
      return o;
    }
  }

  /**
   * Our infer step on {@code model}: one untimed run on the small input, then {@link #RUNS} timed runs on the big one,
   * each a whole engine call (ledger included), as a user's run would be.
   */
  static Side ours(SparkSession spark, Path dir, String model, String small, String big, boolean onnx)
      throws Exception {
    String features = onnx ? "features: [features]\n" : "";
    InferenceBench.infer(spark, dir, model, small, features);
    List<Double> seconds = new ArrayList<>();
    double cpu = 0;
    double rss = 0;
    String output = null;
    for (int i = 0; i < RUNS; i++) {
      Procs.resetPeakRss();
      Duration cpu0 = Procs.cpuTime();
      long t0 = System.nanoTime();
      StepRecord r = InferenceBench.infer(spark, dir, model, big, features);
      double s = (System.nanoTime() - t0) / 1e9;
      if (seconds.isEmpty() || s < Collections.min(seconds)) {
        cpu = Procs.cpuTime().minus(cpu0).toNanos() / 1e9;
        rss = Procs.peakRssMb();
        output = r.outputs().get("output").uri();
      }
      seconds.add(s);
    }
    return new Side(seconds, cpu, rss, output);
  }

  record Agreement(long rows, double maxAbsDiff, long oursRows, long theirRows) {
    boolean same(long expected) {
      return rows == expected && oursRows == expected && theirRows == expected && maxAbsDiff <= TOLERANCE;
    }
  }

  /** Row by row (joined on {@code row_id}): how many rows both have, and the largest |Δ probability|. */
  static Agreement agreement(SparkSession spark, String ours, String theirs) {
    Dataset<Row> a = spark.read().parquet(ours).select(col("row_id"), col("probability").as("p"));
    Dataset<Row> b = spark.read().parquet(theirs).select(col("row_id"), col("probability").as("q"));
    Row r = a.join(b, "row_id").agg(count("*"), max(abs(col("p").minus(col("q"))))).first();
    double diff = r.isNullAt(1) ? Double.NaN : ((Number) r.get(1)).doubleValue();
    return new Agreement(r.getLong(0), diff, a.count(), b.count());
  }
}
