package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * Training benchmarks: scaling from 1 to N workers, and the a9a input and step runner the other training benchmarks
 * ({@link MllibBench}, {@link TrainPeersBench}) share.
 */
final class TrainBench {

  private TrainBench() {}

  /** a9a (32,560 rows) replicated {@code times} times, written once as Parquet; returns its path. */
  static String a9a(SparkSession spark, Path dir, int times) {
    return a9a(spark, dir, "a9a.libsvm", times);
  }

  /**
   * A libsvm file of the a9a example ({@code a9a.libsvm}, or the test split {@code a9a.t.libsvm}) replicated
   * {@code times} times as Parquet ({@code label}, {@code features} vector); returns its path.
   */
  static String a9a(SparkSession spark, Path dir, String file, int times) {
    Path data = Path.of(System.getProperty(Settings.HOME_PROPERTY, Settings.HOME_DEFAULT),
        "jobs/examples/a9a/data", file);
    if (!Files.isRegularFile(data)) {
      throw StagecraftException.user("Cannot find %s (run from the Stagecraft repository, or set %s)",
          data.toAbsolutePath(), Settings.HOME_ENV);
    }
    Dataset<Row> one = spark.read().format("libsvm").option("numFeatures", "123").load(data.toString());
    Dataset<Row> all = one;
    for (int i = 1; i < times; i++) {
      all = all.union(one);
    }
    String out = dir.resolve(file.replace(".libsvm", "") + "-x" + times + ".parquet").toUri().toString();
    all.write().mode("overwrite").parquet(out);
    return out;
  }

  /** Runs one train step on {@code input} and returns its ledger record. */
  static StepRecord train(SparkSession spark, Path dir, String input, int workers, String model) throws Exception {
    return train(spark, dir, input, workers, model, "");
  }

  /** As {@link #train(SparkSession, Path, String, int, String)}, with more step fields ({@code "checkpoint: …"}). */
  static StepRecord train(SparkSession spark, Path dir, String input, int workers, String model, String extra)
      throws Exception {
    return runStep(spark, dir, trainStep(input, workers, model, extra));
  }

  /** The YAML fields of a train step {@code fit} (unindented), as {@link #train} runs it. */
  static String trainStep(String input, int workers, String model, String extra) {
    return """
        id: fit
        kind: train
        input: "%s"
        label: label
        workers: %d
        model: %s
        """.formatted(input, workers, model) + (extra.isEmpty() ? "" : extra + "\n");
  }

  /** A workflow of the one step {@code step} (its YAML fields, unindented). */
  static String workflow(String step) {
    return "name: bench\nsteps:\n  - " + step.strip().indent(4).substring(4);
  }

  /**
   * Runs a workflow of the one step {@code step} (its YAML fields, unindented) in a fresh run under {@code dir} and
   * returns its ledger record; a failed step fails the benchmark with the step's error.
   */
  static StepRecord runStep(SparkSession spark, Path dir, String step) throws Exception {
    Path f = dir.resolve("bench-" + System.nanoTime() + ".yaml");
    Files.writeString(f, workflow(step));
    StepKinds kinds = StepKinds.discover();
    WorkflowSpec spec = new WorkflowLoader(kinds).load(f);
    String id = spec.order().get(0);
    RunLedger ledger = new Engine(spark, kinds, EngineListener.NONE).run(spec,
        Engine.Options.run("bench-" + System.nanoTime()).withWorkspace(dir.resolve("ws").toString()));
    StepRecord r = ledger.step(id);
    if (r.status() != StepStatus.SUCCEEDED) {
      throw new StagecraftException(ErrorCategory.INTERNAL, "benchmark step '" + id + "' failed: " + r.error());
    }
    return r;
  }

  /** Rows per worker per step in {@code train-scaling}: 1 worker's global batch, and each of N workers' share. */
  static final int PER_WORKER_BATCH = 1024;

  /**
   * Weak scaling: 1 worker at global batch B against N workers at global batch N × B (B rows per worker per step),
   * each worker with one intra-op thread, on the same rows for the same epochs; samples/s is the measure. (Strong
   * scaling — the same global batch split N ways — mostly measures how badly a small batch uses a core.)
   */
  static void scaling(SparkSession spark, int workers, double scale, Consumer<ObjectNode> out) throws Exception {
    requireOneIntraOpThread(spark, "train-scaling");
    Path dir = Bench.scratch("stagecraft-bench");
    int times = (int) Math.max(1, Math.round(4 * scale));
    String input = a9a(spark, dir, times);
    // Warm-up: JIT, DJL's engine, and the ring's code (the N-worker barrier stage).
    train(spark, dir, input, 1, "{ type: logistic, epochs: 1, batch_size: " + PER_WORKER_BATCH + " }");
    train(spark, dir, input, workers, "{ type: logistic, epochs: 1, batch_size: " + workers * PER_WORKER_BATCH + " }");
    // A model whose step is mostly per-call overhead (logistic: 124 parameters) and one with real compute per row.
    for (String[] m : new String[][] {
        {"logistic", "{ type: logistic, epochs: 3, batch_size: %d, optimizer: adam, lr: 0.01 }"},
        {"mlp-256-128", "{ type: mlp, hidden: [256, 128], epochs: 2, batch_size: %d, optimizer: adam, lr: 0.001 }"}}) {
      StepRecord one = train(spark, dir, input, 1, m[1].formatted(PER_WORKER_BATCH));
      StepRecord many = train(spark, dir, input, workers, m[1].formatted(workers * PER_WORKER_BATCH));
      out.accept(scalingLine(m[0], 32560L * times, workers, one, many));
    }
  }

  /**
   * The train step gives each task as many PyTorch intra-op threads as it has CPUs ({@code spark.task.cpus}, from a
   * step's policy); this bench's steps name no policy, so the application's setting decides, and it must be 1.
   */
  static void requireOneIntraOpThread(SparkSession spark, String bench) {
    int cpus = spark.sparkContext().getConf().getInt("spark.task.cpus", 1);
    if (cpus != 1) {
      throw StagecraftException.user("bench %s gives each worker 1 intra-op thread, which the train step takes from "
          + "spark.task.cpus, but spark.task.cpus is %d here (leave it unset)", bench, cpus);
    }
  }

  private static ObjectNode scalingLine(String model, long rows, int workers, StepRecord one, StepRecord many)
      throws Exception {
    double s1 = one.metrics().get("samples_per_second");
    double sn = many.metrics().get("samples_per_second");
    ObjectNode line = Results.line("train-scaling");
    ObjectNode params = line.putObject("params").put("rows", rows).put("model", model).put("scaling", "weak")
        .put("workers", workers).put("intra_op_threads", 1).put("per_worker_batch", PER_WORKER_BATCH)
        .put("cores", Runtime.getRuntime().availableProcessors());
    params.putObject("global_batch").put("ours", workers * PER_WORKER_BATCH).put("baseline", PER_WORKER_BATCH);
    line.putObject("ours").put("workers", workers).put("samples_per_second", Bench.round(sn, 1))
        .set("split", split(many));
    line.putObject("baseline").put("name", "1 worker").put("samples_per_second", Bench.round(s1, 1))
        .set("split", split(one));
    // Context: the same steps with no Spark and no exchange at all, 1 thread at B vs N threads each at B at once.
    Map<String, Object> spec = model.equals("logistic") ? Map.of("type", "logistic")
        : Map.of("type", "mlp", "hidden", List.of(256, 128));
    double ceiling = ComputeLimit.efficiency(spec, 123, PER_WORKER_BATCH, model.equals("logistic") ? 400 : 100,
        workers, 3);
    line.putObject("limit").put("name", workers + " × 1-worker samples/s")
        .put("samples_per_second", Bench.round(workers * s1, 1))
        .put("compute_only_efficiency", Bench.round(ceiling, 3))
        .put("compute_only", "the same forward/backward steps, no Spark, no exchange: 1 thread at batch "
            + PER_WORKER_BATCH + " vs " + workers + " threads each at batch " + PER_WORKER_BATCH
            + " at once, 1 intra-op thread each");
    line.put("speedup", Bench.round(sn / s1, 3));
    line.put("of_limit", Bench.round(sn / (workers * s1), 3));
    return line;
  }

  /** Rank 0's loop time: forward/backward, all-reduce, and the rest (batch bookkeeping, optimizer). */
  private static ObjectNode split(StepRecord r) {
    ObjectNode n = Results.JSON.createObjectNode();
    double loop = r.metrics().get("loop_seconds");
    double compute = r.metrics().get("compute_seconds");
    double exchange = r.metrics().get("allreduce_seconds");
    n.put("loop_s", Bench.round(loop, 3)).put("compute_s", Bench.round(compute, 3))
        .put("allreduce_s", Bench.round(exchange, 3)).put("other_s", Bench.round(loop - compute - exchange, 3));
    return n;
  }
}
