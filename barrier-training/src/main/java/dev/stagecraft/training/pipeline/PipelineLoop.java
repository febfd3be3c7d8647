package dev.stagecraft.training.pipeline;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.training.checkpoint.TrainingState;
import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.collective.PipeLinks;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.Optimizer;
import dev.stagecraft.training.model.StageModel;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.function.Supplier;

/**
 * Synchronous pipeline-parallel training on one rank: stage {@code s} of one of {@code D} replicas of a {@code P}-stage
 * pipeline.
 *
 * <p>Every step, each replica takes its local batch of {@code ceil(batchSize / D)} rows (the same rows, in the same
 * seeded order, as rank {@code replica} of a {@code D}-worker data-parallel run), cuts it into {@code M} micro-batches
 * and runs them through its stages in the schedule's order: stage 0 reads the features, every other stage receives
 * its input activations from the stage before; the last stage computes the loss against the labels and starts the
 * backward pass, each stage sending the gradient of its input back. Parameter gradients accumulate over the
 * micro-batches as sums over rows. The last stage's summed loss is passed back to stage 0. Then each stage's gradient,
 * summed loss and row count are summed across the replicas by that stage's own ring (one all-reduce per stage), divided
 * by the global row count and applied by the stage's optimizer: the update of the global batch's mean gradient, as the
 * data-parallel loop makes it, up to the order of floating-point additions.
 *
 * <p>A stage holds only its own layers' parameters and optimizer state. Every replica of every stage runs the same
 * number of steps (a replica whose rows ran out contributes zero rows), so all of them stay in step.
 */
public final class PipelineLoop {
  private PipelineLoop() {}

  /** Where this rank sits, and whom it talks to. */
  public record Position(Parallelism parallelism, int stage, int replica, int replicas, PipeLinks links,
      Communicator stageRing) {
    public Position {
      requireNonNull(parallelism, "parallelism is null");
      requireNonNull(links, "links is null");
      requireNonNull(stageRing, "stageRing is null");
      if (stage != links.rank() || parallelism.pipeline() != links.worldSize()
          || replicas != stageRing.worldSize() || replica != stageRing.rank()) {
        throw new IllegalArgumentException("Inconsistent pipeline position: stage " + stage + " of "
            + parallelism.pipeline() + " (links: " + links.rank() + " of " + links.worldSize() + "), replica "
            + replica + " of " + replicas + " (stage ring: " + stageRing.rank() + " of " + stageRing.worldSize()
            + ")");
      }
    }
  }

  /**
   * The outcome on this rank.
   *
   * @param parameters this stage's final parameters
   * @param lossCurve one point per step, {step, epoch, mean loss over the global batch}
   * @param computeSeconds time in this stage's forward and backward passes
   * @param pipeWaitSeconds time waiting for the neighbouring stages' activations and gradients (the bubble)
   * @param sendSeconds time sending activations and gradients to them
   * @param exchangeSeconds time in the stage ring's all-reduce
   * @param bytesSent activations and gradients sent to the neighbouring stages
   * @param peakMicroBatches the most micro-batches whose activations this stage held at once
   * @param peakActivationBytes the most bytes of activations it held at once for backward passes
   */
  public record Result(float[] parameters, List<double[]> lossCurve, long steps, long samples, double seconds,
      double computeSeconds, double pipeWaitSeconds, double sendSeconds, double exchangeSeconds, long bytesSent,
      int peakMicroBatches, long peakActivationBytes, long parameterBytes, long optimizerBytes) {
    /** The measured bubble: the share of the pipeline's time this stage spent waiting for its neighbours. */
    public double bubbleFraction() {
      double busy = computeSeconds + pipeWaitSeconds + sendSeconds;
      return busy > 0 ? pipeWaitSeconds / busy : 0;
    }
  }

  public static Result run(Position at, StageModel model, Optimizer optimizer, WorkerLoop.LocalData data,
      WorkerLoop.Config config, WorkerLoop.Listener listener) {
    return run(at, model, optimizer, data, config, listener, null, null);
  }

  /**
   * Runs the loop, from {@code resume} if given (this stage's shard of a checkpoint every rank agreed on), saving
   * checkpoints through {@code checkpoints} if given (every rank passes one, or none does).
   */
  public static Result run(Position at, StageModel model, Optimizer optimizer, WorkerLoop.LocalData data,
      WorkerLoop.Config config, WorkerLoop.Listener listener, TrainingState resume,
      PipelineCheckpoints checkpoints) {
    return new Run(at, model, optimizer, data, config, listener).train(resume, checkpoints);
  }

  /** One rank's run: its buffers and counters. */
  private static final class Run {
    private final Position at;
    private final StageModel model;
    private final Optimizer optimizer;
    private final WorkerLoop.LocalData data;
    private final WorkerLoop.Config config;
    private final WorkerLoop.Listener listener;
    private final int microBatches;
    private final List<PipeSchedule.Op> ops;
    private final float[] params;
    private final float[] exchange;
    private final float[] received;
    private final FloatBuffer xs;
    private final FloatBuffer ys;
    private final int[] order;
    private long computeNanos;
    private long sendNanos;

    Run(Position at, StageModel model, Optimizer optimizer, WorkerLoop.LocalData data, WorkerLoop.Config config,
        WorkerLoop.Listener listener) {
      this.at = at;
      this.model = requireNonNull(model, "model is null");
      this.optimizer = requireNonNull(optimizer, "optimizer is null");
      this.data = requireNonNull(data, "data is null");
      this.config = requireNonNull(config, "config is null");
      this.listener = listener;
      this.microBatches = at.parallelism().microBatches();
      this.ops = at.parallelism().schedule().ops(at.stage(), at.parallelism().pipeline(), microBatches);
      this.params = model.parameters();
      this.exchange = new float[params.length + 2];
      int localBatch = localBatch();
      int widest = Math.max(model.inputWidth(), model.outputWidth());
      this.received = new float[localBatch * widest];
      int nf = data.numFeatures();
      this.xs = ByteBuffer.allocateDirect(Math.max(1, localBatch * nf) * 4).order(ByteOrder.nativeOrder())
          .asFloatBuffer();
      this.ys = ByteBuffer.allocateDirect(Math.max(1, localBatch) * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
      this.order = new int[data.rows()];
      for (int i = 0; i < order.length; i++) {
        order[i] = i;
      }
    }

    private int localBatch() {
      return (config.batchSize() + at.replicas() - 1) / at.replicas();
    }

    Result train(TrainingState resume, PipelineCheckpoints checkpoints) {
      Communicator ring = at.stageRing();
      if (resume != null) {
        if (resume.parameters().length != params.length) {
          throw new IllegalArgumentException("Cannot resume stage " + at.stage() + ": its checkpoint holds "
              + resume.parameters().length + " parameters, the stage has " + params.length);
        }
        System.arraycopy(resume.parameters(), 0, params, 0, params.length);
        optimizer.importState(resume.optimizerState().get());
        model.setTrainingSteps(resume.globalStep());
      }
      ring.broadcast(params, 0); // the replicas of a stage start equal (they are built from one seed anyway)
      model.setParameters(params);
      int localBatch = localBatch();
      long maxRows = 0;
      for (byte[] b : ring.allGather(ByteBuffer.allocate(8).putLong(data.rows()).array())) {
        maxRows = Math.max(maxRows, ByteBuffer.wrap(b).getLong());
      }
      long stepsPerEpoch = (maxRows + localBatch - 1) / localBatch;
      long totalSteps = stepsPerEpoch * config.epochs();
      float[] mean = new float[params.length];
      float baseLr = optimizer.lr();
      WorkerLoop.Start begin = WorkerLoop.Start.of(resume, stepsPerEpoch);
      List<double[]> curve = begin.curve();
      long step = begin.step();
      long samples = begin.samples();
      double earlierSeconds = begin.earlierSeconds();
      int firstEpoch = begin.epoch();
      long firstStep = begin.stepInEpoch();
      long exchangeNanos = 0;
      long waitedBefore = at.links().receiveWaitNanos();
      long start = System.nanoTime();
      for (int epoch = 1; epoch < firstEpoch; epoch++) {
        WorkerLoop.shuffle(order, config, epoch, at.replica()); // replays the earlier epochs' orders
      }
      for (int epoch = firstEpoch; epoch <= config.epochs(); epoch++) {
        WorkerLoop.shuffle(order, config, epoch, at.replica());
        for (long s = epoch == firstEpoch ? firstStep : 0; s < stepsPerEpoch; s++) {
          int from = (int) Math.min(data.rows(), s * localBatch);
          int rows = Math.min(localBatch, data.rows() - from);
          Arrays.fill(exchange, 0f);
          exchange[params.length] = runMicroBatches(step, from, rows);
          exchange[params.length + 1] = rows;
          long t1 = System.nanoTime();
          ring.allReduceSum(exchange);
          exchangeNanos += System.nanoTime() - t1;
          float total = exchange[params.length + 1];
          for (int i = 0; i < params.length; i++) {
            mean[i] = exchange[i] / total;
          }
          if (config.schedule() != WorkerLoop.Schedule.CONSTANT) {
            optimizer.setLr((float) Math.max(baseLr * config.schedule().factor(step, totalSteps), baseLr * 1e-3));
          }
          optimizer.update(params, mean);
          model.setParameters(params);
          model.zeroGradients();
          model.endStep();
          step++;
          samples += (long) total;
          double meanLoss = exchange[params.length] / total;
          curve.add(new double[] {step, epoch, meanLoss});
          if (listener != null) {
            listener.step(epoch, step, totalSteps, meanLoss, samples,
                earlierSeconds + (System.nanoTime() - start) / 1e9);
          }
          if (checkpoints != null) {
            int nextEpoch = s + 1 < stepsPerEpoch ? epoch : epoch + 1;
            long nextStep = s + 1 < stepsPerEpoch ? s + 1 : 0;
            checkpoints.afterStep(step, snapshot(step, nextEpoch, nextStep, samples, earlierSeconds, start, curve));
          }
        }
      }
      if (checkpoints != null) {
        checkpoints.end(step, snapshot(step, config.epochs() + 1, 0, samples, earlierSeconds, start, curve));
      }
      double seconds = earlierSeconds + (System.nanoTime() - start) / 1e9;
      long waited = at.links().receiveWaitNanos() - waitedBefore;
      return new Result(params.clone(), curve, step, samples, seconds, computeNanos / 1e9, waited / 1e9,
          sendNanos / 1e9, exchangeNanos / 1e9, at.links().bytesSent(), model.peakHeldMicroBatches(),
          model.peakActivationBytes(), model.parameterBytes(), optimizer.exportState().length);
    }

    /** The loop's state when called: this stage's parameters and optimizer, and where the loop is. */
    private Supplier<TrainingState> snapshot(long step, int nextEpoch, long nextStep, long samples,
        double earlierSeconds, long start, List<double[]> curve) {
      return WorkerLoop.snapshot(step, nextEpoch, nextStep, samples, earlierSeconds, start, params, optimizer, curve);
    }

    /**
     * Runs the step's micro-batches in the schedule's order, leaving the summed parameter gradients in the model and
     * {@code exchange}; returns the replica's summed loss (every stage learns it from the last).
     */
    private float runMicroBatches(long step, int from, int rows) {
      int[] sizes = new int[microBatches];
      int[] starts = new int[microBatches];
      for (int m = 0, at0 = from; m < microBatches; m++) {
        sizes[m] = rows / microBatches + (m < rows % microBatches ? 1 : 0);
        starts[m] = at0;
        at0 += sizes[m];
      }
      float lossSum = 0;
      for (PipeSchedule.Op op : ops) {
        int m = op.microBatch();
        if (sizes[m] == 0) {
          continue; // fewer rows than micro-batches: every stage skips the same ones
        }
        int tag = tag(step, m);
        if (op.forward()) {
          lossSum += forward(tag, m, starts[m], sizes[m]);
        } else {
          backward(tag, m, sizes[m]);
        }
      }
      float[] grads = model.gradients();
      System.arraycopy(grads, 0, exchange, 0, params.length);
      return relayLoss(step, lossSum);
    }

    /** One micro-batch forward; on the last stage, returns its summed loss. */
    private float forward(int tag, int m, int start, int rows) {
      FloatBuffer input;
      if (model.isFirst()) {
        int nf = data.numFeatures();
        xs.clear();
        for (int r = 0; r < rows; r++) {
          xs.put(data.features(), order[start + r] * nf, nf);
        }
        xs.flip();
        input = xs;
      } else {
        at.links().receivePrevious(tag, received, rows * model.inputWidth());
        input = FloatBuffer.wrap(received, 0, rows * model.inputWidth());
      }
      long t0 = System.nanoTime();
      if (model.isLast()) {
        ys.clear();
        for (int r = 0; r < rows; r++) {
          ys.put(data.labels()[order[start + r]]);
        }
        ys.flip();
        float loss = model.forwardLoss(m, input, ys, rows);
        computeNanos += System.nanoTime() - t0;
        return loss * rows;
      }
      float[] out = model.forward(m, input, rows);
      long t1 = System.nanoTime();
      computeNanos += t1 - t0;
      at.links().sendNext(tag, out, rows * model.outputWidth());
      sendNanos += System.nanoTime() - t1;
      return 0;
    }

    private void backward(int tag, int m, int rows) {
      FloatBuffer gradient = null;
      if (!model.isLast()) {
        at.links().receiveNext(tag, received, rows * model.outputWidth());
        gradient = FloatBuffer.wrap(received, 0, rows * model.outputWidth());
      }
      long t0 = System.nanoTime();
      float[] inputGradient = model.backward(m, gradient, rows);
      long t1 = System.nanoTime();
      computeNanos += t1 - t0;
      if (!model.isFirst()) {
        at.links().sendPrevious(tag, inputGradient, rows * model.inputWidth());
        sendNanos += System.nanoTime() - t1;
      }
    }

    /** The last stage's summed loss, passed back stage by stage so every stage (and rank 0) knows it. */
    private float relayLoss(long step, float lossSum) {
      float[] loss = {lossSum};
      int tag = tag(step, microBatches);
      if (!model.isLast()) {
        at.links().receiveNext(tag, loss, 1);
      }
      if (!model.isFirst()) {
        at.links().sendPrevious(tag, loss, 1);
      }
      return loss[0];
    }

    /** Frames of one step and micro-batch carry the same tag each way; the loss relay uses micro-batch M. */
    private int tag(long step, int microBatch) {
      return (int) (step * (microBatches + 1) + microBatch);
    }
  }
}
