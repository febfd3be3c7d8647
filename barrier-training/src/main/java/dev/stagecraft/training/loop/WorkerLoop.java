package dev.stagecraft.training.loop;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.training.checkpoint.Checkpointing;
import dev.stagecraft.training.checkpoint.TrainingState;
import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.Optimizer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;

/**
 * Synchronous data-parallel SGD on one rank: the loop each barrier task runs.
 *
 * <p>Rank 0's initial parameters are broadcast; then every step each rank computes the gradient of the mean loss on
 * its local batch of {@code ceil(batchSize / workers)} rows, and one all-reduce sums, over all ranks, the gradients
 * weighted by their batch's row count together with the summed loss and the row count (one vector, one collective
 * per step). Each rank divides by the total and applies the same optimizer update, so all ranks hold bit-identical
 * parameters, equal to one rank training on the union of the local batches. A rank whose partition is exhausted for
 * the epoch contributes zero rows; every rank runs the same number of steps per epoch (that of the largest
 * partition), so each row is used once per epoch.
 *
 * <p>Not thread-safe; the model, optimizer and communicator belong to this loop while it runs.
 */
public final class WorkerLoop {
  /**
   * @param epochs passes over the data
   * @param batchSize global batch size (rows per step over all ranks)
   * @param shuffle reshuffle each rank's rows every epoch (seeded by seed, epoch and rank)
   */
  public record Config(int epochs, int batchSize, boolean shuffle, long seed, Schedule schedule) {
    public Config {
      if (epochs < 1 || batchSize < 1) {
        throw new IllegalArgumentException("epochs and batch size must be at least 1");
      }
    }

    public Config(int epochs, int batchSize, boolean shuffle, long seed) {
      this(epochs, batchSize, shuffle, seed, Schedule.CONSTANT);
    }
  }

  /** How the learning rate changes over the run, as a factor of the configured rate. */
  public enum Schedule {
    CONSTANT,
    /** Half a cosine from 1 at the first step to 0 at the last: large steps early, fine ones at the end. */
    COSINE;

    /** The factor at step {@code step} (0-based) of {@code total}. */
    public double factor(long step, long total) {
      return this == CONSTANT || total <= 1 ? 1 : 0.5 * (1 + Math.cos(Math.PI * step / total));
    }

    public static Schedule parse(String value) {
      for (Schedule s : values()) {
        if (s.name().equalsIgnoreCase(value)) {
          return s;
        }
      }
      throw new IllegalArgumentException("Invalid lr_schedule: '" + value + "' (expected one of: constant, cosine)");
    }
  }

  /** A rank's rows: {@code features} row-major ({@code rows × numFeatures}), one label per row. */
  public record LocalData(float[] features, float[] labels, int rows, int numFeatures) {
    public LocalData {
      requireNonNull(features, "features is null");
      requireNonNull(labels, "labels is null");
      if (features.length < (long) rows * numFeatures || labels.length < rows) {
        throw new IllegalArgumentException("buffers smaller than " + rows + " rows");
      }
    }
  }

  /** What rank 0 hears after each step. */
  public interface Listener {
    void step(int epoch, long step, long totalSteps, double loss, long samples, double seconds);
  }

  /**
   * The outcome on this rank.
   *
   * @param lossCurve one point per step: {step, epoch, mean loss over the global batch}, earlier attempts included
   * @param steps steps completed, earlier attempts included
   * @param seconds training-loop time, earlier attempts included
   * @param computeSeconds time in this rank's forward/backward (batch copy included), this attempt
   * @param exchangeSeconds time in the per-step all-reduce, waiting for slower ranks included, this attempt
   * @param resumedFromStep the step this attempt started after (0 for a fresh start)
   * @param pauseSeconds time the loop stood still for checkpoint snapshots (and waits, if any), this attempt
   */
  public record Result(float[] parameters, List<double[]> lossCurve, long steps, long samples, double seconds,
      double computeSeconds, double exchangeSeconds, long resumedFromStep, double pauseSeconds) {}

  private WorkerLoop() {}

  public static Result run(Communicator comm, FlatModel model, Optimizer optimizer, LocalData data, Config config,
      Listener listener) {
    return run(comm, model, optimizer, data, config, listener, null, Checkpointing.NONE);
  }

  /**
   * Runs the loop, from {@code resume} if given (a checkpoint of the same model, configuration, data and number of
   * ranks; every rank must pass the same one), calling {@code checkpointing} after every step.
   */
  public static Result run(Communicator comm, FlatModel model, Optimizer optimizer, LocalData data, Config config,
      Listener listener, TrainingState resume, Checkpointing checkpointing) {
    requireNonNull(checkpointing, "checkpointing is null");
    int n = comm.worldSize();
    int rank = comm.rank();
    int nf = data.numFeatures();
    float[] params = resume == null ? model.parameters() : resume.parameters().clone();
    if (resume != null) {
      optimizer.importState(resume.optimizerState().get());
      model.setTrainingSteps(resume.globalStep());
    }
    comm.broadcast(params, 0);
    model.setParameters(params);

    int localBatch = (config.batchSize() + n - 1) / n;
    long maxRows = 0;
    for (byte[] b : comm.allGather(ByteBuffer.allocate(8).putLong(data.rows()).array())) {
      maxRows = Math.max(maxRows, ByteBuffer.wrap(b).getLong());
    }
    long stepsPerEpoch = (maxRows + localBatch - 1) / localBatch;
    long totalSteps = stepsPerEpoch * config.epochs();

    int p = params.length;
    float[] exchange = new float[p + 2];
    float[] mean = new float[p];
    FloatBuffer xs = ByteBuffer.allocateDirect(localBatch * nf * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
    FloatBuffer ys = ByteBuffer.allocateDirect(localBatch * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
    int[] order = new int[data.rows()];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    float baseLr = optimizer.lr();
    Start begin = Start.of(resume, stepsPerEpoch);
    List<double[]> curve = begin.curve();
    long step = begin.step();
    long samples = begin.samples();
    double earlierSeconds = begin.earlierSeconds();
    int firstEpoch = begin.epoch();
    long firstStep = begin.stepInEpoch();
    long resumedFrom = step;
    long start = System.nanoTime();
    long computeNanos = 0;
    long exchangeNanos = 0;
    long pauseNanos = 0;
    // Each epoch's order is the previous one shuffled again, so a resume replays the shuffles of the epochs before.
    for (int epoch = 1; epoch < firstEpoch; epoch++) {
      shuffle(order, config, epoch, rank);
    }
    for (int epoch = firstEpoch; epoch <= config.epochs(); epoch++) {
      shuffle(order, config, epoch, rank);
      for (long s = epoch == firstEpoch ? firstStep : 0; s < stepsPerEpoch; s++) {
        int from = (int) Math.min(data.rows(), s * localBatch);
        int rows = Math.min(localBatch, data.rows() - from);
        long t0 = System.nanoTime();
        java.util.Arrays.fill(exchange, 0f);
        if (rows > 0) {
          xs.clear();
          ys.clear();
          for (int r = 0; r < rows; r++) {
            int row = order[from + r];
            xs.put(data.features(), row * nf, nf);
            ys.put(data.labels()[row]);
          }
          xs.flip();
          ys.flip();
          float loss = model.computeGradients(xs, ys, rows);
          float[] g = model.gradients();
          for (int i = 0; i < p; i++) {
            exchange[i] = g[i] * rows;
          }
          exchange[p] = loss * rows;
          exchange[p + 1] = rows;
        }
        long t1 = System.nanoTime();
        comm.allReduceSum(exchange);
        long t2 = System.nanoTime();
        computeNanos += t1 - t0;
        exchangeNanos += t2 - t1;
        float total = exchange[p + 1];
        for (int i = 0; i < p; i++) {
          mean[i] = exchange[i] / total;
        }
        if (config.schedule() != Schedule.CONSTANT) {
          // Never exactly 0: the last step still moves a little.
          optimizer.setLr((float) Math.max(baseLr * config.schedule().factor(step, totalSteps), baseLr * 1e-3));
        }
        optimizer.update(params, mean);
        model.setParameters(params);
        step++;
        samples += (long) total;
        double meanLoss = exchange[p] / total;
        curve.add(new double[] {step, epoch, meanLoss});
        if (listener != null) {
          listener.step(epoch, step, totalSteps, meanLoss, samples,
              earlierSeconds + (System.nanoTime() - start) / 1e9);
        }
        long t3 = System.nanoTime();
        int nextEpoch = s + 1 < stepsPerEpoch ? epoch : epoch + 1;
        long nextStep = s + 1 < stepsPerEpoch ? s + 1 : 0;
        checkpointing.afterStep(step, snapshot(step, nextEpoch, nextStep, samples, earlierSeconds, start, params,
            optimizer, curve));
        pauseNanos += System.nanoTime() - t3;
      }
    }
    long t4 = System.nanoTime();
    checkpointing.end(step, snapshot(step, config.epochs() + 1, 0, samples, earlierSeconds, start, params, optimizer,
        curve));
    pauseNanos += System.nanoTime() - t4;
    return new Result(params, curve, step, samples, earlierSeconds + (t4 - start) / 1e9, computeNanos / 1e9,
        exchangeNanos / 1e9, resumedFrom, pauseNanos / 1e9);
  }

  /**
   * Where a loop starts: at the beginning, or where a checkpoint left off (its step, samples, seconds, epoch, step
   * within the epoch and loss curve so far).
   */
  public record Start(long step, long samples, double earlierSeconds, int epoch, long stepInEpoch,
      List<double[]> curve) {
    /**
     * @param resume the checkpoint to continue from, or null to start afresh
     * @throws IllegalArgumentException when the checkpoint's position does not fit {@code stepsPerEpoch}
     */
    public static Start of(TrainingState resume, long stepsPerEpoch) {
      List<double[]> curve = new ArrayList<>();
      if (resume == null) {
        return new Start(0, 0, 0, 1, 0, curve);
      }
      double[] c = resume.curve();
      for (int i = 0; i < c.length; i += 3) {
        curve.add(new double[] {c[i], c[i + 1], c[i + 2]});
      }
      long step = resume.globalStep();
      int epoch = resume.epoch();
      long inEpoch = resume.nextStepInEpoch();
      if (inEpoch > stepsPerEpoch || step != (epoch - 1) * stepsPerEpoch + inEpoch) {
        throw new IllegalArgumentException("Cannot resume at step " + step + " (epoch " + epoch + ", step "
            + inEpoch + " of the epoch): this run has " + stepsPerEpoch + " steps per epoch");
      }
      return new Start(step, resume.samples(), resume.seconds(), epoch, inEpoch, curve);
    }
  }

  /** Copies the loop's state when called (not before): the snapshot a checkpoint saves. */
  public static Supplier<TrainingState> snapshot(long step, int nextEpoch, long nextStep, long samples,
      double earlierSeconds, long start, float[] params, Optimizer optimizer, List<double[]> curve) {
    return () -> {
      double[] c = new double[curve.size() * 3];
      for (int i = 0; i < curve.size(); i++) {
        System.arraycopy(curve.get(i), 0, c, i * 3, 3);
      }
      return new TrainingState(step, nextEpoch, nextStep, samples,
          earlierSeconds + (System.nanoTime() - start) / 1e9, params.clone(), optimizer.snapshotState(), c);
    };
  }

  /**
   * Reorders a rank's row indices for {@code epoch} when the config shuffles: the previous epoch's order shuffled
   * again, seeded by seed, epoch and rank (a pipeline's replica shuffles as the data-parallel rank of its index).
   */
  public static void shuffle(int[] a, Config config, int epoch, int rank) {
    if (!config.shuffle()) {
      return;
    }
    SplittableRandom random = new SplittableRandom(config.seed() * 1_000_003L + epoch * 7919L + rank);
    for (int i = a.length - 1; i > 0; i--) {
      int j = random.nextInt(i + 1);
      int t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
  }
}
