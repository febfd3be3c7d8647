package dev.stagecraft.jobs.bench;

import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Task;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;

/**
 * The ceiling of weak data-parallel scaling on this machine, with no Spark and no communication at all: the same
 * forward/backward steps of the same model, one thread at batch B against N threads each at batch B, at the same
 * time, in one JVM, each thread with one PyTorch intra-op thread as a training task with one CPU has. What N workers
 * could reach if the all-reduce were free.
 */
final class ComputeLimit {
  private ComputeLimit() {}

  /**
   * N-thread samples/s ÷ (N × 1-thread samples/s), medians of {@code reps} timings: each thread runs {@code steps}
   * steps of {@code batch} rows (the per-worker batch), so the ratio is the 1-thread time ÷ the N-thread time.
   */
  static double efficiency(Map<String, Object> spec, int numFeatures, int batch, int steps, int workers, int reps)
      throws Exception {
    double[] one = new double[reps];
    double[] many = new double[reps];
    for (int r = 0; r < reps; r++) {
      one[r] = time(spec, numFeatures, batch, steps, 1);
      many[r] = time(spec, numFeatures, batch, steps, workers);
    }
    return Bench.median(one) / Bench.median(many);
  }

  /** Seconds for {@code threads} threads to run {@code steps} steps of {@code rows} rows each, all at once. */
  private static double time(Map<String, Object> spec, int nf, int rows, int steps, int threads) throws Exception {
    ModelSpec s = ModelSpec.fromMap(spec);
    return Concurrently.seconds("compute-limit", threads, (thread, gate) -> {
      Devices.setIntraOpThreads(1);
      try (FlatModel model = FlatModel.create(s, Task.BINARY, nf, 2, Devices.select(Optional.empty()))) {
        FloatBuffer x = ByteBuffer.allocateDirect(rows * nf * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
        FloatBuffer y = ByteBuffer.allocateDirect(rows * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
        SplittableRandom random = new SplittableRandom(thread);
        for (int i = 0; i < rows * nf; i++) {
          x.put(i, random.nextDouble() < 0.1 ? 1f : 0f); // a9a-like sparse binary features
        }
        for (int i = 0; i < rows; i++) {
          y.put(i, random.nextBoolean() ? 1f : 0f);
        }
        for (int i = 0; i < 10; i++) { // warm-up
          model.computeGradients(x, y, rows);
        }
        gate.start();
        for (int i = 0; i < steps; i++) {
          model.computeGradients(x, y, rows);
        }
        gate.end();
      }
    });
  }
}
