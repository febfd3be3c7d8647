package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.training.checkpoint.CheckpointStore;
import dev.stagecraft.training.checkpoint.TrainingState;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.sql.SparkSession;

/**
 * What checkpoints cost: the training loop's time with a checkpoint every 50 steps against the same training without
 * (in ABBA order after a warm-up, medians), and the checkpoint writer's throughput (serialise, write and hash each
 * file, write the manifest last, apply retention) against plain java.nio writes of the same bytes to the same disk.
 */
final class CheckpointBench {
  static final int EVERY_STEPS = 50;
  static final String MODEL =
      "{ type: mlp, hidden: [512, 256], epochs: 2, batch_size: 256, optimizer: adam, lr: 0.001 }";

  private CheckpointBench() {}

  static void run(SparkSession spark, int workers, double scale, int reps, Consumer<ObjectNode> out)
      throws Exception {
    Path dir = Bench.scratch("stagecraft-bench-checkpoint");
    int times = (int) Math.max(1, Math.round(2 * scale));
    String input = TrainBench.a9a(spark, dir, times);
    String checkpoint = "checkpoint: { every_steps: " + EVERY_STEPS + ", keep: 2 }";
    int rounds = Math.max(2, Math.min(reps, 8));
    Bench.log("checkpoint: warm-up, then {} round(s) of training without and with a checkpoint every {} steps",
        rounds, EVERY_STEPS);
    TrainBench.train(spark, dir, input, workers, MODEL);
    double[] without = new double[rounds];
    double[] with = new double[rounds];
    StepRecord last = null;
    for (int r = 0; r < rounds; r++) {
      // ABBA order: whatever drifts on the machine during a round weighs on both sides alike.
      if (r % 2 == 0) {
        without[r] = TrainBench.train(spark, dir, input, workers, MODEL).metrics().get("loop_seconds");
      }
      last = TrainBench.train(spark, dir, input, workers, MODEL, checkpoint);
      with[r] = last.metrics().get("loop_seconds");
      if (r % 2 == 1) {
        without[r] = TrainBench.train(spark, dir, input, workers, MODEL).metrics().get("loop_seconds");
      }
      Bench.log("checkpoint: round {}: {} s without, {} s with ({} checkpoints)", r + 1,
          Bench.round(without[r], 3), Bench.round(with[r], 3), last.metrics().get("checkpoints_written"));
    }
    double t0 = Bench.median(without);
    double t1 = Bench.median(with);
    ObjectNode line = Results.line("checkpoint");
    line.putObject("params").put("rows", 32560L * times).put("model", "mlp-512-256").put("workers", workers)
        .put("every_steps", EVERY_STEPS).put("rounds", rounds).put("filesystem", "file");
    line.putObject("ours").put("loop_seconds", Bench.round(t1, 3))
        .put("checkpoints", last.metrics().get("checkpoints_written"))
        .put("bytes_per_checkpoint", Math.round(last.metrics().get("checkpoint_bytes")
            / Math.max(1, last.metrics().get("checkpoints_written"))))
        .put("pause_seconds", Bench.round(last.metrics().get("checkpoint_pause_seconds"), 4));
    line.putObject("baseline").put("name", "no checkpoints").put("loop_seconds", Bench.round(t0, 3));
    line.put("overhead", Bench.round(t1 / t0 - 1, 4));
    out.accept(line);

    long bytes = Math.round(last.metrics().get("checkpoint_bytes") / Math.max(1,
        last.metrics().get("checkpoints_written")));
    writer(dir, bytes, reps, out);
  }

  /**
   * The writer (serialise, write each file and hash it, write the manifest last, apply retention) against the
   * physical limit: plain writes of the same bytes to the same disk through java.nio.
   */
  static void writer(Path dir, long bytes, int reps, Consumer<ObjectNode> out) throws Exception {
    // A state of the measured size: a third parameters, two thirds Adam's moments, as in training.
    int params = (int) Math.max(1, bytes / 12);
    SplittableRandom random = new SplittableRandom(1);
    float[] p = new float[params];
    for (int i = 0; i < params; i++) {
      p[i] = (float) random.nextGaussian();
    }
    byte[] optimizer = new byte[params * 8];
    random.nextBytes(optimizer);
    TrainingState state = new TrainingState(1000, 2, 0, 256_000, 10, p, () -> optimizer, new double[3 * 1000]);
    FileSystem fs = FileSystem.getLocal(new Configuration());
    org.apache.hadoop.fs.Path root = new org.apache.hadoop.fs.Path(dir.resolve("writer").toUri().toString());
    CheckpointStore store = new CheckpointStore(fs, root, 2);
    int n = Math.max(5, reps * 2);
    double[] ours = new double[n];
    double[] plain = new double[n];
    long total = 0;
    for (int r = -1; r < n; r++) { // r = -1: warm-up
      long a = System.nanoTime();
      Map<String, byte[]> files = state.toFiles();
      store.write(1000 + r + 1, 2, "bench", files);
      long b = System.nanoTime();
      // The limit: the same bytes written as plain files by the OS's file system (java.nio), nothing else: no
      // checksums, no manifest, no retention.
      java.nio.file.Path plainFiles = dir.resolve("plain");
      Files.createDirectories(plainFiles);
      for (Map.Entry<String, byte[]> f : files.entrySet()) {
        Files.write(plainFiles.resolve(f.getKey()), f.getValue());
      }
      long c = System.nanoTime();
      if (r >= 0) {
        ours[r] = (b - a) / 1e9;
        plain[r] = (c - b) / 1e9;
        total = files.values().stream().mapToLong(x -> x.length).sum();
      }
    }
    double o = Bench.median(ours);
    double l = Bench.median(plain);
    ObjectNode line = Results.line("checkpoint-writer");
    line.putObject("params").put("bytes", total).put("reps", n).put("filesystem", "file");
    line.putObject("ours").put("seconds", Bench.round(o, 5)).put("mb_per_second", Bench.round(total / o / 1e6, 1));
    line.putObject("limit").put("name", "plain write of the same files (java.nio, same disk)")
        .put("seconds", Bench.round(l, 5))
        .put("mb_per_second", Bench.round(total / l / 1e6, 1));
    line.put("of_limit", Bench.round(l / o, 3));
    out.accept(line);
  }
}
