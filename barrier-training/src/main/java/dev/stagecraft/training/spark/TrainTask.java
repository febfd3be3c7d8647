package dev.stagecraft.training.spark;

import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.training.checkpoint.CheckpointLocation;
import dev.stagecraft.training.checkpoint.CheckpointPolicy;
import dev.stagecraft.training.checkpoint.CheckpointStore;
import dev.stagecraft.training.checkpoint.CheckpointWriter;
import dev.stagecraft.training.checkpoint.Checkpointer;
import dev.stagecraft.training.checkpoint.Checkpointing;
import dev.stagecraft.training.checkpoint.TrainingState;
import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.collective.Subgroups;
import dev.stagecraft.training.collective.WaitTimes;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Optimizer;
import dev.stagecraft.training.model.Task;
import dev.stagecraft.training.rendezvous.Rendezvous;
import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.SparkEnv;
import org.apache.spark.resource.ResourceInformation;
import org.apache.spark.sql.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What each barrier task of a {@code train} step runs once connected to its peers ({@link BarrierGroup}): read its
 * partition once into float buffers, bind to the GPU Spark gave it, agree with the others on the checkpoint to
 * resume from (if any) and run {@link WorkerLoop}. Rank 0 reports progress to the driver, writes the checkpoints and
 * returns the trained parameters; every rank returns where it ran.
 */
final class TrainTask implements BarrierGroup.Work<Object, TrainTask.Outcome> {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(TrainTask.class);

  /** The progress line rank 0 sends when it resumes; the driver records the step that follows it. */
  static final String RESUME_EVENT = "resuming from checkpoint step-";

  /** Checkpointing of a step: where, when, and the fingerprint of what may resume from it. */
  record Checkpoints(CheckpointLocation location, CheckpointPolicy policy, String fingerprint)
      implements Serializable {}

  /**
   * What one task reports back to the driver. Parameters, the loss curve and checkpoint figures come from rank 0 only;
   * every rank sends the summary of its own rows under the final parameters (the training metrics).
   */
  record Outcome(int rank, String host, String gpuAddress, String device, int rows, float[] parameters,
      List<double[]> lossCurve, long steps, long samples, double seconds, double computeSeconds,
      double exchangeSeconds, long resumedFromStep, double pauseSeconds, CheckpointWriter.Stats checkpoints,
      Evaluator.Summary trainSummary, Evaluator.Summary validationSummary, WaitTimes waits,
      PipelineTask.Figures pipeline) implements Serializable {
    /** The GPU address Spark assigned the task, if any. */
    Optional<String> gpu() {
      return Optional.ofNullable(gpuAddress);
    }
  }

  private final Map<String, Object> modelSpec;
  private final Task task;
  private final int numClasses;
  private final TrainingInput.Features features;
  private final double[] mean;
  private final double[] std;
  private final boolean shuffle;
  private final WorkerLoop.Schedule schedule;
  private final Checkpoints checkpoints;
  private final Shards shards;
  private final PipelineTask.Setup pipeline;

  /**
   * @param checkpoints null: no checkpoints
   * @param shards null: each task reads the rows of its partition; otherwise the staged data of its rank (the
   *     partitions carry nothing), and the validation shard too if there is one
   * @param pipeline null: data-parallel; otherwise the pipeline's shape (the shards then hold one per replica)
   */
  TrainTask(Map<String, Object> modelSpec, Task task, int numClasses, TrainingInput.Features features, double[] mean,
      double[] std, boolean shuffle, WorkerLoop.Schedule schedule, Checkpoints checkpoints, Shards shards,
      PipelineTask.Setup pipeline) {
    this.shards = shards;
    this.pipeline = pipeline;
    this.schedule = schedule;
    this.checkpoints = checkpoints;
    this.modelSpec = modelSpec;
    this.task = task;
    this.numClasses = numClasses;
    this.features = features;
    this.mean = mean;
    this.std = std;
    this.shuffle = shuffle;
  }

  Map<String, Object> modelSpec() {
    return modelSpec;
  }

  Task task() {
    return task;
  }

  int numClasses() {
    return numClasses;
  }

  double[] mean() {
    return mean;
  }

  boolean shuffle() {
    return shuffle;
  }

  WorkerLoop.Schedule schedule() {
    return schedule;
  }

  Shards shards() {
    return shards;
  }

  Checkpoints checkpoints() {
    return checkpoints;
  }

  @Override
  public Outcome run(Communicator comm, Subgroups subgroups, Iterator<Object> rows, Rendezvous.Reporter reporter)
      throws IOException {
    BarrierTaskContext ctx = BarrierTaskContext.get();
    int rank = comm.rank();
    // GPU binding: exactly the address Spark assigned this task; CPU (logged once) when no CUDA device exists.
    scala.Option<ResourceInformation> gpus = ctx.resources().get("gpu");
    Optional<String> gpu = gpus.isDefined() && gpus.get().addresses().length > 0
        ? Optional.of(gpus.get().addresses()[0]) : Optional.empty();
    // As many PyTorch intra-op threads as the task has CPUs, so workers sharing an executor do not oversubscribe it
    // (set on this thread: the one that runs the model).
    Devices.setIntraOpThreads(Math.max(1, ctx.cpus()));
    String host = SparkEnv.get().blockManager().blockManagerId().host();
    if (pipeline != null) {
      return PipelineTask.run(this, pipeline, comm, subgroups, reporter, host, gpu);
    }
    @SuppressWarnings("unchecked")
    WorkerLoop.LocalData data = shards != null ? shards.read(Shards.TRAIN, rank)
        : materialise((Iterator<Row>) (Iterator<?>) rows, features, mean, std);
    ModelSpec spec = ModelSpec.fromMap(modelSpec);
    try (FlatModel model = FlatModel.create(spec, task, mean.length, numClasses, Devices.select(gpu))) {
      model.setRandomStream(rank);
      LOG.info("Rank {} of {} on {} ({}, GPU {}): {} rows", rank, comm.worldSize(), host, model.device(),
          gpu.orElse("none"), data.rows());
      ProgressReporter listener = reporter == null ? null : new ProgressReporter(reporter, spec.epochs());
      Optimizer optimizer = Optimizer.create(spec, model.numParameters());
      WorkerLoop.Config config = new WorkerLoop.Config(spec.epochs(), spec.batchSize(), shuffle, spec.seed(), schedule);
      WorkerLoop.Result r;
      Checkpointer checkpointer = null;
      if (checkpoints == null) {
        r = WorkerLoop.run(comm, model, optimizer, data, config, listener, null, Checkpointing.NONE);
      } else {
        CheckpointStore store = checkpoints.location().open();
        TrainingState resume = agreeOnCheckpoint(comm, store, reporter);
        if (rank == 0) {
          // Failed and abandoned writes become progress lines (sent on this, the training thread).
          java.util.function.Consumer<String> events = reporter == null ? line -> {} : reporter::send;
          checkpointer = new Checkpointer(checkpoints.policy(), new CheckpointWriter(store, checkpoints.fingerprint(),
              checkpoints.policy().writeTimeout(), events), resume == null ? 0 : resume.globalStep());
        }
        try {
          r = WorkerLoop.run(comm, model, optimizer, data, config, listener, resume,
              checkpointer == null ? Checkpointing.NONE : checkpointer);
        } finally {
          if (checkpointer != null) {
            checkpointer.close();
          }
        }
      }
      if (listener != null) {
        listener.flush();
      }
      // Every rank holds the same final parameters (synchronous SGD) and its rows are still in memory.
      Evaluator.Summary summary = Evaluator.summarise(model, r.parameters(), data, task, numClasses);
      Evaluator.Summary validation = shards != null && shards.hasValidation()
          ? Evaluator.summarise(model, r.parameters(), shards.read(Shards.VALIDATION, rank), task, numClasses)
          : null;
      return rank == 0
          ? new Outcome(rank, host, gpu.orElse(null), model.device().toString(), data.rows(), r.parameters(),
              new java.util.ArrayList<>(r.lossCurve()), r.steps(), r.samples(), r.seconds(), r.computeSeconds(),
              r.exchangeSeconds(), r.resumedFromStep(), r.pauseSeconds(),
              checkpointer == null ? null : checkpointer.stats(), summary, validation, comm.waits(), null)
          : new Outcome(rank, host, gpu.orElse(null), model.device().toString(), data.rows(), null, List.of(),
              r.steps(), r.samples(), r.seconds(), r.computeSeconds(), r.exchangeSeconds(), r.resumedFromStep(),
              r.pauseSeconds(), null, summary, validation, comm.waits(), null);
    }
  }

  /**
   * Rank 0 picks the newest checkpoint whose manifest verifies (the store logs the ones it skipped and why) and drops
   * the newer, unusable ones; every rank learns its step and loads the same checkpoint. Null: start from step 0.
   */
  private TrainingState agreeOnCheckpoint(Communicator comm, CheckpointStore store, Rendezvous.Reporter reporter)
      throws IOException {
    TrainingState state = null;
    long chosen = -1;
    if (comm.rank() == 0) {
      Optional<CheckpointStore.Loaded> found = store.latestValid(checkpoints.fingerprint());
      if (found.isPresent()) {
        state = TrainingState.fromFiles(found.get().files());
        chosen = state.globalStep();
        LOG.info("Resuming from checkpoint {} (step {}, epoch {}){}", found.get().dir(), chosen,
            found.get().manifest().epoch(), found.get().skipped().isEmpty() ? ""
                : "; skipped newer: " + String.join("; ", found.get().skipped()));
        if (reporter != null) {
          reporter.send(RESUME_EVENT + chosen + " (" + found.get().dir() + ")");
        }
      }
      int dropped = store.discardAfter(chosen);
      if (dropped > 0) {
        LOG.info("Deleted {} unusable checkpoint(s) newer than step {} under {}", dropped, chosen, store.root());
      }
    }
    byte[] mine = comm.rank() == 0 ? ByteBuffer.allocate(Long.BYTES).putLong(chosen).array() : new byte[0];
    chosen = ByteBuffer.wrap(comm.allGather(mine).get(0)).getLong();
    if (comm.rank() != 0 && chosen >= 0) {
      state = TrainingState.fromFiles(store.load(chosen, checkpoints.fingerprint()).files());
    }
    return state;
  }

  /** A partition's rows (label first), read once into compact float buffers, the features standardised. */
  static WorkerLoop.LocalData materialise(Iterator<Row> rows, TrainingInput.Features features, double[] mean,
      double[] std) {
    int nf = mean.length;
    float[] x = new float[1024 * nf];
    float[] y = new float[1024];
    int n = 0;
    while (rows.hasNext()) {
      Row row = rows.next();
      if (n == y.length) {
        y = Arrays.copyOf(y, y.length * 2);
        x = Arrays.copyOf(x, y.length * nf);
      }
      y[n] = (float) row.getDouble(0);
      TrainingInput.standardise(row, features, mean, std, x, n * nf);
      n++;
    }
    return new WorkerLoop.LocalData(x, y, n, nf);
  }

  /** Sends rank 0's progress to the driver about once a second, and the last step. */
  static final class ProgressReporter implements WorkerLoop.Listener {
    private final Rendezvous.Reporter reporter;
    private final int epochs;
    private long lastSent;
    private String pending;

    ProgressReporter(Rendezvous.Reporter reporter, int epochs) {
      this.reporter = reporter;
      this.epochs = epochs;
    }

    @Override
    public void step(int epoch, long step, long totalSteps, double loss, long samples, double seconds) {
      double rate = seconds > 0 ? samples / seconds : 0;
      double eta = step > 0 ? seconds * (totalSteps - step) / step : 0;
      pending = Progress.format(epoch, epochs, step, totalSteps, loss, rate, eta);
      long now = System.nanoTime();
      if (now - lastSent > 1_000_000_000L || step == totalSteps) {
        reporter.send(pending);
        lastSent = now;
        pending = null;
      }
    }

    void flush() {
      if (pending != null) {
        reporter.send(pending);
      }
    }
  }
}
