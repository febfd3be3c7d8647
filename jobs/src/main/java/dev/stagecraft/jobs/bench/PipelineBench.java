package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.collective.FrameIntegrity;
import dev.stagecraft.training.collective.PipeLinks;
import dev.stagecraft.training.collective.Subgroups;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Optimizer;
import dev.stagecraft.training.model.StageModel;
import dev.stagecraft.training.model.Task;
import dev.stagecraft.training.pipeline.Parallelism;
import dev.stagecraft.training.pipeline.PipeSchedule;
import dev.stagecraft.training.pipeline.PipelineLoop;
import dev.stagecraft.training.pipeline.StageSplit;
import dev.stagecraft.training.spark.BarrierGroup;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import java.util.stream.IntStream;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * {@code bench pipeline}: pipeline-parallel training of a deep MLP (8 hidden layers of 1024 by default) over P = 2
 * barrier tasks, one stage each, with one intra-op thread per stage, for both schedules and M ∈ {2, 4, 8, 16}
 * micro-batches, against the same model trained data-parallel by one worker with P intra-op threads (the same
 * threads in all), on the same synthetic rows and global batch, in the same run.
 *
 * <p>Per configuration, one line: the measured bubble per stage and its mean against the theory
 * {@code (P − 1) / (M + P − 1)} and against what the schedule must leave for these stages as they are (each stage's
 * forward and backward time per micro-batch measured alone and with every stage computing at once, replayed by
 * {@link PipelineSim}); peak activation bytes per stage (1F1B's against GPipe's at the same M); samples/s against the
 * baseline. One more line compares each stage's parameter and optimizer bytes with the whole model's.
 */
final class PipelineBench {
  static final int WIDTH = 1024;
  static final int HIDDEN_LAYERS = 8;
  static final int GLOBAL_BATCH = 512;
  /** Timed steps per configuration; the warm-up steps before them run in a separate, untimed loop. */
  static final int STEPS = 120;
  static final int WARMUP_STEPS = 2;
  /**
   * The pipeline trained what the baseline trained: per-step losses within this (relative) over the first steps —
   * the first forward, the first update of the whole batch's gradient and the forward after it — before rounding
   * differences compound (measured: 1e-7 to 2e-6 there, then 1e-5 to 1e-3 within a few steps on this model, whose
   * Adam steps at a loss near ln 2 follow the gradients' signs).
   */
  static final int SAME_TRAINING_STEPS = 3;
  static final double SAME_TRAINING_TOLERANCE = 1e-5;
  static final List<Integer> MICRO_BATCHES = List.of(2, 4, 8, 16);
  static final List<PipeSchedule> SCHEDULES = List.of(PipeSchedule.GPIPE, PipeSchedule.ONE_F_ONE_B);
  /** Goal: the measured bubble within this of the theory, from {@link #BUBBLE_GOAL_FROM} micro-batches on. */
  static final double BUBBLE_TOLERANCE = 0.05;
  static final int BUBBLE_GOAL_FROM = 4;
  /** Goal: 1F1B's peak activation bytes per stage ≤ (P / M) × GPipe's × this. */
  static final double ACTIVATION_SLACK = 1.1;
  /** Goal: a stage's parameter and optimizer bytes ≤ this ÷ P of the whole model's (0.55 at P = 2). */
  static final double MEMORY_SLACK = 1.1;
  /** Micro-batches each stage times, alone and then with every stage at once, to say what the bubble must be. */
  static final int CALIBRATION_MICRO_BATCHES = 8;
  static final long SEED = 7;
  static final Duration TIMEOUT = Duration.ofSeconds(600);

  private PipelineBench() {}

  /** The model and run, scaled by {@code --size} (the width; layers, batch and steps stay). */
  record Shape(int width, int hiddenLayers, int globalBatch, int steps, int warmupSteps, int stages)
      implements Serializable {
    static Shape of(double scale, int stages) {
      return new Shape((int) Math.max(8, Math.round(WIDTH * scale)), HIDDEN_LAYERS, GLOBAL_BATCH, STEPS,
          WARMUP_STEPS, stages);
    }

    /** Features as wide as the hidden layers, so the balanced split gives every stage the same layers' work. */
    int features() {
      return width;
    }

    ModelSpec spec() {
      return ModelSpec.fromMap(Map.of("type", "mlp", "hidden", java.util.Collections.nCopies(hiddenLayers, width),
          "optimizer", "adam", "lr", 0.001, "seed", SEED, "batch_size", globalBatch));
    }

    StageSplit split() {
      return StageSplit.balanced(StageSplit.layers(spec(), features(), 1), stages);
    }

    String model() {
      return "mlp-" + hiddenLayers + "x" + width;
    }
  }

  /** What one worker measured in the baseline. */
  record Baseline(long samples, double seconds, double computeSeconds, long parameterBytes, long optimizerBytes,
      int intraOpThreads, double[] losses) implements Serializable {}

  /** What one stage measured in one configuration. */
  record StageFigures(int stage, int first, int last, int intraOpThreads, long samples, double seconds,
      double computeSeconds, double waitSeconds, double sendSeconds, double exchangeSeconds, long bytesSent,
      int peakMicroBatches, long peakActivationBytes, long parameterBytes, long optimizerBytes, double bubble,
      double soloForward, double soloBackward, double sharedForward, double sharedBackward, double[] losses)
      implements Serializable {
    double slowdown() {
      return (sharedForward + sharedBackward) / (soloForward + soloBackward);
    }
  }

  static void run(SparkSession spark, int stages, FrameIntegrity integrity, double scale, Consumer<ObjectNode> out)
      throws Exception {
    JavaSparkContext jsc = new JavaSparkContext(spark.sparkContext());
    Shape shape = Shape.of(scale, stages);
    if (stages > shape.hiddenLayers() + 1) {
      throw StagecraftException.user("Invalid --workers %d for pipeline: the model has %d layers to split (expected "
          + "2 to %d stages)", stages, shape.hiddenLayers() + 1, shape.hiddenLayers() + 1);
    }
    Bench.log("pipeline: {} ({} features, {} layers), global batch {}, {} steps after {} warm-up, {} stages, on {} "
        + "cores ({})", shape.model(), shape.features(), shape.hiddenLayers() + 1, shape.globalBatch(), shape.steps(),
        shape.warmupSteps(), stages, Runtime.getRuntime().availableProcessors(), jsc.master());
    Baseline baseline = baseline(jsc, shape, integrity);
    Bench.log("pipeline: baseline (1 worker, {} intra-op threads): {} samples/s", baseline.intraOpThreads(),
        Bench.round(baseline.samples() / baseline.seconds(), 1));
    Map<Integer, List<StageFigures>> gpipe = new HashMap<>();
    boolean memoryDone = false;
    for (int m : MICRO_BATCHES) {
      for (PipeSchedule schedule : SCHEDULES) {
        List<StageFigures> figures = pipelined(jsc, shape, schedule, m, integrity);
        if (schedule == PipeSchedule.GPIPE) {
          gpipe.put(m, figures);
        }
        out.accept(line(jsc, shape, schedule, m, integrity, figures, gpipe.get(m), baseline));
        if (!memoryDone) {
          out.accept(memoryLine(shape, figures, baseline));
          memoryDone = true;
        }
      }
    }
  }

  /** The same model, rows and global batch, one worker with as many intra-op threads as the pipeline has stages. */
  static Baseline baseline(JavaSparkContext jsc, Shape shape, FrameIntegrity integrity) throws Exception {
    JavaRDD<Integer> one = jsc.parallelize(List.of(0), 1);
    return BarrierGroup.run(one, "bench-pipeline-baseline-" + System.nanoTime(), TIMEOUT, integrity, line -> {},
        (comm, subgroups, rows, reporter) -> {
          Devices.setIntraOpThreads(shape.stages()); // on this thread, the one that runs the model
          int threads = Devices.intraOpThreads();
          ModelSpec spec = shape.spec();
          WorkerLoop.LocalData data = data(shape);
          WorkerLoop.Config config = new WorkerLoop.Config(1, shape.globalBatch(), false, SEED);
          try (FlatModel warm = FlatModel.create(spec, Task.BINARY, shape.features(), 2, device())) {
            WorkerLoop.run(comm, warm, Optimizer.create(spec, warm.numParameters()), warmup(shape, data), config,
                null);
          }
          try (FlatModel model = FlatModel.create(spec, Task.BINARY, shape.features(), 2, device())) {
            Optimizer optimizer = Optimizer.create(spec, model.numParameters());
            WorkerLoop.Result r = WorkerLoop.run(comm, model, optimizer, data, config, null);
            return new Baseline(r.samples(), r.seconds(), r.computeSeconds(), model.numParameters() * 4L,
                optimizer.exportState().length, threads, losses(r.lossCurve()));
          }
        }).get(0);
  }

  /**
   * One configuration in one barrier stage of P tasks: a warm-up loop, the timed loop (fresh stages and links for
   * each), then each stage's forward and backward timed alone and with every stage at once; figures by stage.
   */
  static List<StageFigures> pipelined(JavaSparkContext jsc, Shape shape, PipeSchedule schedule, int microBatches,
      FrameIntegrity integrity) throws Exception {
    int p = shape.stages();
    JavaRDD<Integer> ranks = jsc.parallelize(IntStream.range(0, p).boxed().toList(), p);
    Bench.log("pipeline: {}, M = {}", schedule.label(), microBatches);
    return BarrierGroup.run(ranks, "bench-pipeline-" + System.nanoTime(), TIMEOUT, integrity, line -> {},
        (comm, subgroups, rows, reporter) -> {
          Devices.setIntraOpThreads(1); // one thread per stage: P in all, as the baseline has
          int threads = Devices.intraOpThreads();
          int stage = comm.rank();
          Parallelism par = new Parallelism(p, microBatches, schedule, null);
          StageSplit.Stage mine = shape.split().stage(stage);
          WorkerLoop.LocalData data = data(shape);
          WorkerLoop.Config config = new WorkerLoop.Config(1, shape.globalBatch(), false, SEED);
          try (Communicator ring = subgroups.ring("stage-" + stage, List.of(stage))) {
            loop(subgroups, "warm-up", par, stage, ring, shape, mine, warmup(shape, data), config, false);
            return loop(subgroups, "timed", par, stage, ring, shape, mine, data, config, true).figures(comm,
                threads);
          }
        });
  }

  /** A finished loop on one stage, its model still open for the calibration. */
  private record Loop(PipelineLoop.Result result, StageModel model, Shape shape, int stage, StageSplit.Stage mine,
      int microBatches, WorkerLoop.LocalData data) {
    StageFigures figures(Communicator world, int threads) {
      try (StageModel m = model) {
        int rows = shape.globalBatch() / microBatches;
        double[] solo = null;
        for (int s = 0; s < shape.stages(); s++) {
          world.barrier();
          if (s == stage) {
            solo = calibrate(m, data, rows);
          }
        }
        world.barrier();
        double[] shared = calibrate(m, data, rows);
        world.barrier();
        PipelineLoop.Result r = result;
        return new StageFigures(stage, mine.first(), mine.last(), threads, r.samples(), r.seconds(),
            r.computeSeconds(), r.pipeWaitSeconds(), r.sendSeconds(), r.exchangeSeconds(), r.bytesSent(),
            r.peakMicroBatches(), r.peakActivationBytes(), r.parameterBytes(), r.optimizerBytes(),
            r.bubbleFraction(), solo[0], solo[1], shared[0], shared[1],
            losses(r.lossCurve()));
      }
    }
  }

  /**
   * Runs the pipelined loop once on fresh links and a fresh stage; the timed run keeps its stage open for
   * {@link Loop#figures}, the warm-up closes it.
   */
  private static Loop loop(Subgroups subgroups, String name, Parallelism par, int stage, Communicator ring,
      Shape shape, StageSplit.Stage mine, WorkerLoop.LocalData data, WorkerLoop.Config config, boolean keep) {
    ModelSpec spec = shape.spec();
    StageModel model = StageModel.create(spec, Task.BINARY, shape.features(), 2, device(), mine.first(),
        mine.last());
    try (PipeLinks links = subgroups.pipe(name, IntStream.range(0, par.pipeline()).boxed().toList())) {
      model.setRandomStream(stage);
      PipelineLoop.Result r = PipelineLoop.run(new PipelineLoop.Position(par, stage, 0, 1, links, ring), model,
          Optimizer.create(spec, model.numParameters()), data, config, null);
      if (!keep) {
        model.close();
        return null;
      }
      return new Loop(r, model, shape, stage, mine, par.microBatches(), data);
    } catch (RuntimeException e) {
      model.close();
      throw e;
    }
  }

  /**
   * Median seconds of one forward and of one backward of a micro-batch of {@code rows} rows through {@code model},
   * after one untimed: the data's features on the first stage, random activations (and gradients) elsewhere.
   */
  static double[] calibrate(StageModel model, WorkerLoop.LocalData data, int rows) {
    SplittableRandom random = new SplittableRandom(SEED + model.firstLayer());
    FloatBuffer input = direct(rows * model.inputWidth());
    if (model.isFirst()) {
      input.put(data.features(), 0, rows * model.inputWidth()).flip();
    } else {
      fill(input, random);
    }
    FloatBuffer labels = direct(rows);
    labels.put(data.labels(), 0, rows).flip();
    FloatBuffer gradient = model.isLast() ? null : fill(direct(rows * model.outputWidth()), random);
    double[] forward = new double[CALIBRATION_MICRO_BATCHES];
    double[] backward = new double[CALIBRATION_MICRO_BATCHES];
    for (int i = -1; i < CALIBRATION_MICRO_BATCHES; i++) {
      long t0 = System.nanoTime();
      if (model.isLast()) {
        model.forwardLoss(0, input, labels, rows);
      } else {
        model.forward(0, input, rows);
      }
      long t1 = System.nanoTime();
      model.backward(0, gradient, rows);
      long t2 = System.nanoTime();
      if (i >= 0) {
        forward[i] = (t1 - t0) / 1e9;
        backward[i] = (t2 - t1) / 1e9;
      }
    }
    model.zeroGradients();
    return new double[] {Bench.median(forward), Bench.median(backward)};
  }

  private static FloatBuffer direct(int floats) {
    return ByteBuffer.allocateDirect(Math.max(1, floats) * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
  }

  private static FloatBuffer fill(FloatBuffer b, SplittableRandom random) {
    for (int i = 0; i < b.capacity(); i++) {
      b.put(i, (float) (random.nextDouble() * 2 - 1));
    }
    return b;
  }

  private static ai.djl.Device device() {
    return Devices.select(Optional.empty());
  }

  /**
   * {@code steps × globalBatch} synthetic rows, the same on every task: features uniform with unit variance, labels
   * from a fixed non-linear rule of the first features (so the loss falls, as a check that training happens).
   */
  static WorkerLoop.LocalData data(Shape shape) {
    int nf = shape.features();
    int rows = shape.steps() * shape.globalBatch();
    float[] x = new float[rows * nf];
    float[] y = new float[rows];
    SplittableRandom random = new SplittableRandom(SEED);
    double unit = Math.sqrt(3);
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) ((random.nextDouble() * 2 - 1) * unit);
    }
    int terms = Math.min(nf, 16);
    for (int r = 0; r < rows; r++) {
      double s = 0;
      for (int j = 0; j < terms; j++) {
        s += (j % 2 == 0 ? 1 : -1) * x[r * nf + j] * x[r * nf + (j + 1) % terms];
      }
      y[r] = s > 0 ? 1 : 0;
    }
    return new WorkerLoop.LocalData(x, y, rows, nf);
  }

  /** The first warm-up steps' worth of the same rows. */
  static WorkerLoop.LocalData warmup(Shape shape, WorkerLoop.LocalData data) {
    return new WorkerLoop.LocalData(data.features(), data.labels(), shape.warmupSteps() * shape.globalBatch(),
        data.numFeatures());
  }

  // ---- the JSON lines ------------------------------------------------------------------------------------------

  private static ObjectNode params(JavaSparkContext jsc, Shape shape, FrameIntegrity integrity, ObjectNode line) {
    ObjectNode p = line.putObject("params");
    p.put("model", shape.model()).put("hidden_layers", shape.hiddenLayers()).put("width", shape.width())
        .put("features", shape.features()).put("stages", shape.stages());
    ArrayNode split = p.putArray("stage_layers");
    shape.split().stages().forEach(s -> split.add(s.first() + ".." + s.last()));
    p.put("optimizer", "adam").put("global_batch", shape.globalBatch()).put("steps", shape.steps())
        .put("warmup_steps", shape.warmupSteps()).put("cores", Runtime.getRuntime().availableProcessors())
        .put("master", jsc.master()).put("integrity", integrity.key());
    return p;
  }

  static ObjectNode line(JavaSparkContext jsc, Shape shape, PipeSchedule schedule, int m, FrameIntegrity integrity,
      List<StageFigures> stages, List<StageFigures> gpipe, Baseline baseline) {
    int p = shape.stages();
    ObjectNode line = Results.line("pipeline");
    params(jsc, shape, integrity, line).put("schedule", schedule.label()).put("micro_batches", m)
        .put("micro_batch_rows", shape.globalBatch() / m)
        .putObject("intra_op_threads").put("per_stage", stages.get(0).intraOpThreads())
        .put("baseline", baseline.intraOpThreads());
    // The pipeline's time is its slowest stage's: the first stage ends last, with the last backward.
    double seconds = stages.stream().mapToDouble(StageFigures::seconds).max().orElseThrow();
    double samplesPerSecond = stages.get(0).samples() / seconds;
    double baselineSamplesPerSecond = baseline.samples() / baseline.seconds();
    double measured = stages.stream().mapToDouble(StageFigures::bubble).average().orElseThrow();
    double theory = PipeSchedule.theoreticalBubble(p, m);
    // What the schedule must leave for these stages, replayed on paper (PipelineSim) three ways.
    List<PipelineSim.StageTimes> alone = new ArrayList<>();
    List<PipelineSim.StageTimes> together = new ArrayList<>();
    List<PipelineSim.StageTimes> inLoop = new ArrayList<>();
    for (int s = 0; s < p; s++) {
      StageFigures f = stages.get(s);
      alone.add(PipelineSim.StageTimes.compute(f.soloForward(), f.soloBackward()));
      together.add(new PipelineSim.StageTimes(f.soloForward(), f.soloBackward(), 0, 0, Math.max(1, f.slowdown())));
      double perMicroBatch = f.computeSeconds() / ((double) shape.steps() * m);
      double forwardShare = f.soloForward() / (f.soloForward() + f.soloBackward());
      int directions = (s > 0 ? 1 : 0) + (s < p - 1 ? 1 : 0);
      double send = f.sendSeconds() / ((double) shape.steps() * m * directions);
      double between = (f.seconds() - f.computeSeconds() - f.waitSeconds() - f.sendSeconds()) / shape.steps();
      inLoop.add(new PipelineSim.StageTimes(perMicroBatch * forwardShare, perMicroBatch * (1 - forwardShare), send,
          Math.max(0, between), 1));
    }
    PipelineSim.Result simAlone = PipelineSim.run(schedule, m, shape.steps(), alone);
    PipelineSim.Result simTogether = PipelineSim.run(schedule, m, shape.steps(), together);
    PipelineSim.Result simLoop = PipelineSim.run(schedule, m, shape.steps(), inLoop);

    ObjectNode ours = line.putObject("ours");
    ours.put("samples_per_second", Bench.round(samplesPerSecond, 1)).put("seconds", Bench.round(seconds, 3))
        .put("bubble", Bench.round(measured, 4))
        .put("bubble_is", "mean over stages of waiting on a neighbour ÷ (computing + waiting + sending)");
    ArrayNode per = ours.putArray("stages");
    for (int s = 0; s < p; s++) {
      StageFigures f = stages.get(s);
      double perMicroBatch = f.computeSeconds() / ((double) shape.steps() * m);
      ObjectNode n = per.addObject();
      n.put("stage", s).put("layers", f.first() + ".." + f.last()).put("bubble", Bench.round(f.bubble(), 4))
          .put("compute_s", Bench.round(f.computeSeconds(), 3)).put("waiting_s", Bench.round(f.waitSeconds(), 3))
          .put("sending_s", Bench.round(f.sendSeconds(), 3)).put("allreduce_s", Bench.round(f.exchangeSeconds(), 3))
          .put("other_s", Bench.round(f.seconds() - f.computeSeconds() - f.waitSeconds() - f.sendSeconds()
              - f.exchangeSeconds(), 3))
          .put("bytes_sent", f.bytesSent()).put("peak_micro_batches", f.peakMicroBatches())
          .put("peak_activation_bytes", f.peakActivationBytes())
          .put("forward_ms_alone", Bench.round(f.soloForward() * 1e3, 3))
          .put("backward_ms_alone", Bench.round(f.soloBackward() * 1e3, 3))
          .put("forward_ms_together", Bench.round(f.sharedForward() * 1e3, 3))
          .put("backward_ms_together", Bench.round(f.sharedBackward() * 1e3, 3))
          .put("micro_batch_ms_in_loop", Bench.round(perMicroBatch * 1e3, 3))
          .put("slowdown_together", Bench.round(f.slowdown(), 3))
          .put("slowdown_in_loop", Bench.round(perMicroBatch / (f.soloForward() + f.soloBackward()), 3));
    }
    line.putObject("baseline").put("name", "1 worker, data-parallel, " + baseline.intraOpThreads()
            + " intra-op threads, same model, rows and global batch")
        .put("samples_per_second", Bench.round(baselineSamplesPerSecond, 1))
        .put("seconds", Bench.round(baseline.seconds(), 3))
        .put("compute_s", Bench.round(baseline.computeSeconds(), 3));
    line.putObject("theory").put("bubble", Bench.round(theory, 4)).put("formula", "(P − 1) / (M + P − 1)")
        .put("assumes", "equal stages, forward and backward alike on every stage, free transfers, a core per stage");
    ObjectNode expected = line.putObject("expected");
    expected.put("bubble", Bench.round(simLoop.meanBubble(), 4))
        .put("bubble_alone", Bench.round(simAlone.meanBubble(), 4))
        .put("bubble_cores_shared", Bench.round(simTogether.meanBubble(), 4));
    ArrayNode expectedPer = expected.putArray("stages");
    for (int s = 0; s < p; s++) {
      expectedPer.addObject().put("stage", s).put("bubble", Bench.round(simLoop.bubble(s), 4))
          .put("bubble_alone", Bench.round(simAlone.bubble(s), 4))
          .put("bubble_cores_shared", Bench.round(simTogether.bubble(s), 4));
    }
    expected.put("how", "the schedule replayed on paper, transfers instant: bubble with each stage's compute per "
        + "micro-batch, sending time and work between steps as this loop measured them; bubble_alone with its "
        + "forward and backward timed alone (unequal stages only); bubble_cores_shared the same, slowed by the "
        + "factor measured while every stage computes at once");
    line.put("speedup", Bench.round(samplesPerSecond / baselineSamplesPerSecond, 3));
    line.put("bubble_gap", Bench.round(measured - theory, 4));
    line.put("bubble_gap_expected", Bench.round(measured - simLoop.meanBubble(), 4));
    line.put("bubble_gap_these_stages", Bench.round(measured - simAlone.meanBubble(), 4));
    if (m >= BUBBLE_GOAL_FROM) {
      line.put("bubble_goal_met", Math.abs(measured - theory) <= BUBBLE_TOLERANCE);
      // The fair measure beside it: the theory's formula assumes equal stages; these stages' own times, replayed in
      // the schedule's order, say what bubble the schedule must leave for them.
      line.put("bubble_goal_met_these_stages", Math.abs(measured - simAlone.meanBubble()) <= BUBBLE_TOLERANCE);
    }
    if (schedule == PipeSchedule.ONE_F_ONE_B && gpipe != null) {
      double bound = (double) p / m * ACTIVATION_SLACK;
      ArrayNode ratios = line.putArray("activation_of_gpipe");
      boolean met = true;
      for (int s = 0; s < p; s++) {
        double ratio = (double) stages.get(s).peakActivationBytes() / gpipe.get(s).peakActivationBytes();
        ratios.add(Bench.round(ratio, 4));
        met &= ratio <= bound;
      }
      line.put("activation_goal", Bench.round(bound, 4)).put("activation_goal_met", met);
    }
    // Same parameters and rows: the losses may differ only by the order of additions (micro-batch sums against one
    // batch's), so the first steps agree to float precision. Later steps drift apart as Adam turns the rounding
    // differences of near-zero gradients into full-size steps (its update is about lr whatever the gradient's size)
    // and the differences compound, so the drift over the whole run is reported, not judged.
    double[] mine = stages.get(p - 1).losses();
    double[] theirs = baseline.losses();
    double early = 0;
    double drift = 0;
    for (int i = 0; i < Math.min(mine.length, theirs.length); i++) {
      double d = Math.abs(mine[i] - theirs[i]) / Math.max(1e-12, Math.abs(theirs[i]));
      drift = Math.max(drift, d);
      early = i < SAME_TRAINING_STEPS ? Math.max(early, d) : early;
    }
    line.put("first_loss", Bench.round(mine[0], 6)).put("first_loss_baseline", Bench.round(theirs[0], 6))
        .put("last_loss", Bench.round(mine[mine.length - 1], 6))
        .put("last_loss_baseline", Bench.round(theirs[theirs.length - 1], 6))
        .put("loss_drift_first_steps", early).put("loss_drift", drift)
        .put("same_training", mine.length == theirs.length && early <= SAME_TRAINING_TOLERANCE);
    return line;
  }

  /** The loss of each step of a curve of {step, epoch, loss} points. */
  static double[] losses(List<double[]> curve) {
    return curve.stream().mapToDouble(c -> c[2]).toArray();
  }

  static ObjectNode memoryLine(Shape shape, List<StageFigures> stages, Baseline baseline) {
    ObjectNode line = Results.line("pipeline-memory");
    ObjectNode params = line.putObject("params");
    params.put("model", shape.model()).put("features", shape.features()).put("stages", shape.stages())
        .put("optimizer", "adam").put("bytes", "parameters (4 per float) + the optimizer's exported state");
    long whole = baseline.parameterBytes() + baseline.optimizerBytes();
    double most = 0;
    ArrayNode per = line.putObject("ours").putArray("stages");
    for (StageFigures f : stages) {
      long bytes = f.parameterBytes() + f.optimizerBytes();
      double share = (double) bytes / whole;
      most = Math.max(most, share);
      per.addObject().put("stage", f.stage()).put("layers", f.first() + ".." + f.last())
          .put("parameter_bytes", f.parameterBytes()).put("optimizer_bytes", f.optimizerBytes()).put("bytes", bytes)
          .put("of_whole", Bench.round(share, 4));
    }
    line.putObject("baseline").put("name", "the whole model on one worker")
        .put("parameter_bytes", baseline.parameterBytes()).put("optimizer_bytes", baseline.optimizerBytes())
        .put("bytes", whole);
    double goal = MEMORY_SLACK / shape.stages();
    line.put("of_whole", Bench.round(most, 4)).put("memory_goal", Bench.round(goal, 4))
        .put("memory_goal_met", most <= goal);
    return line;
  }
}
