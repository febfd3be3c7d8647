package dev.stagecraft.training.spark;

import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.training.checkpoint.CheckpointWriter;
import dev.stagecraft.training.checkpoint.TrainingState;
import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.collective.PipeLinks;
import dev.stagecraft.training.collective.Subgroups;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Optimizer;
import dev.stagecraft.training.model.StageModel;
import dev.stagecraft.training.pipeline.Parallelism;
import dev.stagecraft.training.pipeline.PipeSchedule;
import dev.stagecraft.training.pipeline.PipelineCheckpoints;
import dev.stagecraft.training.pipeline.PipelineLoop;
import dev.stagecraft.training.pipeline.StageSplit;
import dev.stagecraft.training.rendezvous.Rendezvous;
import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.IntStream;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A barrier task of a pipelined {@code train} step: stage {@code rank % P} of replica {@code rank / P}. It reads its
 * replica's staged shard, joins its stage's ring (the stage's replicas) and its replica's pipe links (the replica's
 * stages), builds only its own layers on the GPU Spark gave it, and runs {@link PipelineLoop}. Replica 0's ranks
 * return their stage's parameters (the driver puts them back together); every rank returns its figures.
 */
final class PipelineTask {
  private static final Logger LOG = LoggerFactory.getLogger(PipelineTask.class);

  private PipelineTask() {}

  /** What one stage measured, for the step's details. */
  record Figures(int stage, int replica, List<Integer> layers, int parameters, double computeSeconds,
      double pipeWaitSeconds, double sendSeconds, double exchangeSeconds, long bytesSent, int peakMicroBatches,
      long peakActivationBytes, long parameterBytes, long optimizerBytes, double bubbleFraction)
      implements Serializable {}

  /** What the pipeline needs besides a data-parallel task's settings. */
  record Setup(Parallelism parallelism, StageSplit split) implements Serializable {
    /**
     * What a checkpoint's shards depend on, added to its fingerprint: the stages' layers (a checkpoint of another
     * split cannot be put back into these stages). Empty for one stage.
     */
    String layout() {
      StringBuilder b = new StringBuilder();
      for (StageSplit.Stage s : split.stages()) {
        b.append(b.length() == 0 ? "-pp" : "_").append(s.first()).append('.').append(s.last());
      }
      return b.toString();
    }
  }

  /**
   * @param task the data-parallel task's settings (model, task, statistics, shuffling, schedule, shards)
   * @param host where this task runs; {@code gpu} the GPU address Spark assigned it
   */
  static TrainTask.Outcome run(TrainTask task, Setup setup, Communicator world, Subgroups subgroups,
      Rendezvous.Reporter reporter, String host, Optional<String> gpu) throws IOException {
    Parallelism par = setup.parallelism();
    int rank = world.rank();
    int stage = par.stageOf(rank);
    int replica = par.replicaOf(rank);
    int replicas = par.replicas(world.worldSize());
    WorkerLoop.LocalData data = task.shards().read(Shards.TRAIN, replica);
    List<Integer> stageRanks = IntStream.range(0, replicas).map(d -> par.rankOf(d, stage)).boxed().toList();
    List<Integer> pipeRanks = IntStream.range(0, par.pipeline()).map(s -> par.rankOf(replica, s)).boxed().toList();
    StageSplit.Stage mine = setup.split().stage(stage);
    ModelSpec spec = ModelSpec.fromMap(task.modelSpec());
    try (Communicator ring = subgroups.ring("stage-" + stage, stageRanks);
        PipeLinks links = subgroups.pipe("replica-" + replica, pipeRanks);
        StageModel model = StageModel.create(spec, task.task(), task.mean().length, task.numClasses(),
            Devices.select(gpu), mine.first(), mine.last())) {
      model.setRandomStream(rank);
      LOG.info("Rank {} of {}: stage {} (layers {}..{}, {} parameters) of replica {} on {} ({}, GPU {}): {} rows",
          rank, world.worldSize(), stage, mine.first(), mine.last(), model.numParameters(), replica,
          host, model.device(), gpu.orElse("none"), data.rows());
      TrainTask.ProgressReporter listener = reporter == null ? null
          : new TrainTask.ProgressReporter(reporter, spec.epochs());
      Optimizer optimizer = Optimizer.create(spec, model.numParameters());
      WorkerLoop.Config config = new WorkerLoop.Config(spec.epochs(), spec.batchSize(), task.shuffle(),
          spec.seed(), task.schedule());
      PipelineCheckpoints checkpoints = null;
      TrainingState resume = null;
      if (task.checkpoints() != null) {
        TrainTask.Checkpoints c = task.checkpoints();
        checkpoints = new PipelineCheckpoints(world, c.location().open(), c.policy(), c.fingerprint(), stage, replica,
            reporter == null ? line -> {} : reporter::send);
        resume = checkpoints.resume(reporter == null ? line -> {} : line -> reporter.send(TrainTask.RESUME_EVENT
            + line));
      }
      PipelineLoop.Result r = PipelineLoop.run(new PipelineLoop.Position(par, stage, replica, replicas, links, ring),
          model, optimizer, data, config, listener, resume, checkpoints);
      if (listener != null) {
        listener.flush();
      }
      Figures figures = new Figures(stage, replica, mine.layers(), model.numParameters(), r.computeSeconds(),
          r.pipeWaitSeconds(), r.sendSeconds(), r.exchangeSeconds(), r.bytesSent(), r.peakMicroBatches(),
          r.peakActivationBytes(), r.parameterBytes(), r.optimizerBytes(), r.bubbleFraction());
      return new TrainTask.Outcome(rank, host, gpu.orElse(null), model.device().toString(),
          data.rows(), replica == 0 ? r.parameters() : null, rank == 0 ? new java.util.ArrayList<>(r.lossCurve())
          : List.of(), r.steps(), r.samples(), r.seconds(), r.computeSeconds(), r.exchangeSeconds(),
          resume == null ? 0 : resume.globalStep(), checkpoints == null ? 0 : checkpoints.stats().pauseSeconds(),
          rank == 0 && checkpoints != null ? writerStats(checkpoints.stats(), r.steps()) : null, null, null,
          ring.waits(), figures);
    }
  }

  /** The pipeline's checkpoint figures in the data-parallel writer's terms (its writes are synchronous). */
  private static CheckpointWriter.Stats writerStats(PipelineCheckpoints.Stats s, long lastStep) {
    return new CheckpointWriter.Stats(s.written(), 0, s.failed(), 0, s.bytes(), s.pauseSeconds(), s.pauseSeconds(),
        0, lastStep);
  }

  /** The whole model's parameters: replica 0's stages, in stage order. */
  static float[] assemble(List<TrainTask.Outcome> outcomes, int stages) {
    int n = 0;
    for (int s = 0; s < stages; s++) {
      n += outcomes.get(s).parameters().length;
    }
    float[] all = new float[n];
    for (int s = 0, at = 0; s < stages; s++) {
      float[] p = outcomes.get(s).parameters();
      System.arraycopy(p, 0, all, at, p.length);
      at += p.length;
    }
    return all;
  }

  /** The pipeline's shape for a step: its parallelism and the split (given, or balanced for these widths). */
  static Setup setup(StepConfig step, Parallelism par, ModelSpec spec, int numFeatures, int numOutputs) {
    List<StageSplit.Layer> layers = StageSplit.layers(spec, numFeatures, numOutputs);
    try {
      return new Setup(par, par.stages() != null ? StageSplit.given(layers, par.stages())
          : StageSplit.balanced(layers, par.pipeline()));
    } catch (IllegalArgumentException e) {
      throw step.invalid("parallelism.stages", e.getMessage());
    }
  }

  /** Stages the input (and validation input) as one shard per replica, in the application that runs the step. */
  static Shards stage(StepContext ctx, Dataset<Row> selected, TrainingInput.Features features,
      TrainingInput.Stats stats, int replicas, Dataset<Row> validation, TrainingInput.Features validationFeatures) {
    ctx.progress("staging the input for " + replicas + " pipeline replica(s)");
    Shards shards = new Shards(ctx.scratchLocation(), replicas, validation != null, ctx.hadoopConf());
    shards.write(Shards.TRAIN, selected, features, stats.mean(), stats.std());
    if (validation != null) {
      shards.write(Shards.VALIDATION, validation, validationFeatures, stats.mean(), stats.std());
    }
    return shards;
  }

  /** The plan, shown before training: schedule, micro-batches, replicas, the split and the theoretical bubble. */
  static Map<String, Object> plan(Setup setup, int workers) {
    Parallelism par = setup.parallelism();
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("stages", par.pipeline());
    m.put("replicas", par.replicas(workers));
    m.put("micro_batches", par.microBatches());
    m.put("schedule", par.schedule().label());
    m.put("split", par.stages() != null ? "given" : "balanced by parameters and FLOPs per row");
    m.put("stage_layers", setup.split().describe());
    m.put("bubble_theoretical", round(PipeSchedule.theoreticalBubble(par.pipeline(), par.microBatches())));
    return m;
  }

  /** The plan with what each stage measured: compute, waiting on neighbours, bytes sent, memory, bubble. */
  static Map<String, Object> measured(Setup setup, int workers, List<TrainTask.Outcome> outcomes) {
    Map<String, Object> m = plan(setup, workers);
    List<Map<String, Object>> ranks = new ArrayList<>();
    double bubbles = 0;
    for (TrainTask.Outcome o : outcomes) {
      Figures f = o.pipeline();
      Map<String, Object> r = new LinkedHashMap<>();
      r.put("rank", o.rank());
      r.put("stage", f.stage());
      r.put("replica", f.replica());
      r.put("host", o.host());
      r.put("gpu", o.gpu().orElse(""));
      r.put("compute_s", round(f.computeSeconds()));
      r.put("waiting_on_neighbours_s", round(f.pipeWaitSeconds()));
      r.put("sending_s", round(f.sendSeconds()));
      r.put("allreduce_s", round(f.exchangeSeconds()));
      r.put("bytes_sent", f.bytesSent());
      r.put("bubble", round(f.bubbleFraction()));
      r.put("peak_micro_batches_held", f.peakMicroBatches());
      r.put("peak_activation_bytes", f.peakActivationBytes());
      r.put("parameter_bytes", f.parameterBytes());
      r.put("optimizer_bytes", f.optimizerBytes());
      ranks.add(r);
      bubbles += f.bubbleFraction();
    }
    m.put("bubble_measured", round(bubbles / outcomes.size()));
    m.put("per_rank", ranks);
    return m;
  }

  /** The plan in one progress line: stages and their layers, replicas, micro-batches, schedule, theoretical bubble. */
  static String planLine(Setup setup, int workers) {
    Parallelism par = setup.parallelism();
    StringBuilder layers = new StringBuilder();
    for (StageSplit.Stage s : setup.split().stages()) {
      layers.append(layers.length() == 0 ? "" : " | ").append(s.first()).append("..").append(s.last());
    }
    return String.format(java.util.Locale.ROOT, "pipeline: %d stages (layers %s) × %d replica(s), %d micro-batches, "
        + "%s; the schedule leaves %.3f of each step idle", par.pipeline(), layers, par.replicas(workers),
        par.microBatches(), par.schedule().label(), PipeSchedule.theoreticalBubble(par.pipeline(),
            par.microBatches()));
  }

  /** What each stage measured, in one progress line: its bubble, compute, waiting and bytes sent (replica 0's). */
  static String measuredLine(Setup setup, List<TrainTask.Outcome> outcomes) {
    Parallelism par = setup.parallelism();
    StringBuilder b = new StringBuilder();
    double bubbles = 0;
    for (TrainTask.Outcome o : outcomes) {
      bubbles += o.pipeline().bubbleFraction();
    }
    b.append(String.format(java.util.Locale.ROOT, "pipeline: measured bubble %.3f (schedule %.3f)",
        bubbles / outcomes.size(), PipeSchedule.theoreticalBubble(par.pipeline(), par.microBatches())));
    for (TrainTask.Outcome o : outcomes.subList(0, Math.min(par.pipeline(), outcomes.size()))) {
      Figures f = o.pipeline();
      b.append(String.format(java.util.Locale.ROOT, "; stage %d: compute %.1f s, waiting %.1f s, sent %.1f MB",
          f.stage(), f.computeSeconds(), f.pipeWaitSeconds(), f.bytesSent() / 1e6));
    }
    return b.toString();
  }

  private static double round(double v) {
    return Math.round(v * 10_000) / 10_000.0;
  }
}
