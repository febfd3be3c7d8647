package dev.stagecraft.training.spark;

import static dev.stagecraft.spi.FieldSpec.Type.INPUT;
import static dev.stagecraft.spi.FieldSpec.Type.INTEGER;
import static dev.stagecraft.spi.FieldSpec.Type.MAP;
import static dev.stagecraft.spi.FieldSpec.Type.STRING;
import static dev.stagecraft.spi.FieldSpec.Type.STRING_LIST;

import dev.stagecraft.chart.LineChart;
import dev.stagecraft.inference.bundle.BundleManifest;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.inference.bundle.ParameterFile;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.SizingTraits;
import dev.stagecraft.spi.SizingTraits.Recovery;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import dev.stagecraft.training.checkpoint.CheckpointLocation;
import dev.stagecraft.training.checkpoint.CheckpointPolicy;
import dev.stagecraft.training.checkpoint.CheckpointStore;
import dev.stagecraft.training.checkpoint.CheckpointWriter;
import dev.stagecraft.training.collective.FrameIntegrity;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Task;
import dev.stagecraft.training.pipeline.Parallelism;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code train}: data-parallel training of a logistic, linear or MLP model across {@code workers} gang-scheduled
 * Spark barrier tasks, with gradients averaged every step over our own authenticated ring all-reduce. Writes a model
 * bundle ({@code ${steps.ID.model}}) and records the training and validation metrics in the ledger.
 *
 * <p>Order of work, each failure reported before any barrier task starts where it can be: check the model spec and
 * columns; one pass for statistics (rows, mean/std, label range, NaN/Inf); check the cluster has the slots; start
 * the driver's rendezvous; run the barrier stage (whose workers also summarise their own rows for the training
 * metrics); evaluate on the validation input; write the bundle (manifest last).
 *
 * <p>The ring's frames are protected as the step's resource policy says ({@code collectives: { integrity: … }},
 * default {@link FrameIntegrity#DEFAULT}); the step warns at its start when Spark's RPC, which carries the ring's
 * secret to the executors inside the task, is not encrypted ({@link SecretTransport}).
 */
public final class TrainStep implements StepKind {
  private static final Logger LOG = LoggerFactory.getLogger(TrainStep.class);
  /** Extra keys of {@code model:} beyond {@link ModelSpec#KEYS}. */
  /** How long the driver waits for executors to offer enough slots before it fails the step. */
  static final Duration SLOT_WAIT = Duration.ofSeconds(60);
  static final int DEFAULT_MAX_ATTEMPTS = 3;
  /** The key of the statistics {@link #prepare} hands to the training application. */
  static final String PREPARED_STATS = "stats";
  /** The key of the staged data ({@link Shards}) {@link #prepare} hands to the training application. */
  static final String PREPARED_SHARDS = "shards";

  @Override
  public boolean barrier() {
    return true;
  }

  @Override
  public String name() {
    return "train";
  }

  @Override
  public List<FieldSpec> fields() {
    return List.of(
        FieldSpec.required("input", INPUT, "an earlier step's id or a Parquet path"),
        FieldSpec.required("label", STRING, "the label column"),
        FieldSpec.optional("features", STRING_LIST, "numeric feature columns, or one vector column"),
        FieldSpec.optional("validation", INPUT, "an earlier step's id or a Parquet path to measure the model on"),
        FieldSpec.required("model", MAP, "a map with 'type' (logistic, linear, mlp) and training settings"),
        FieldSpec.optional("workers", INTEGER, "the number of barrier tasks (at least 1)"),
        FieldSpec.optional("task", STRING, "one of: " + String.join(", ", TrainConfig.TASKS)),
        FieldSpec.optional("name", STRING, "the model's name under models/ (default: the step id)"),
        FieldSpec.optional("timeout_seconds", INTEGER, "how long a worker waits for its peers (default 120)"),
        FieldSpec.optional("checkpoint", MAP, "a map with every_steps and/or every_seconds, keep, when_busy "
            + "(wait, skip), resume (latest, fresh), write_timeout_seconds (default: half of timeout_seconds)"),
        FieldSpec.optional("parallelism", MAP, "pipeline parallelism: { pipeline: stages (default 1), micro_batches "
            + "(default 1), schedule: gpipe or 1f1b (default), stages: [[layers], …] (default: balanced) }; workers = "
            + "pipeline × data-parallel replicas"),
        FieldSpec.optional("max_attempts", INTEGER, "how many times the barrier stage may run when workers are lost "
            + "(default " + DEFAULT_MAX_ATTEMPTS + "); each retry resumes from the latest checkpoint"));
  }

  @Override
  public List<String> outputs() {
    return List.of("model");
  }

  /**
   * Right-sizing: the workers are a gang (all must fit at once) and each needs a GPU of its own. With checkpoints a
   * preemption loses at most one interval: {@code every_seconds}, else as measured in the latest run (its training
   * loop's time over the checkpoints it wrote); without them, all the work.
   */
  @Override
  public SizingTraits sizing(StepConfig step, Map<String, Double> lastMetrics) {
    int workers;
    try {
      workers = Math.max(1, step.intValue("workers", 1));
    } catch (StagecraftException e) {
      workers = 1; // the step itself reports the bad value when it runs
    }
    Optional<CheckpointPolicy> checkpoints = TrainConfig.checkpointPolicy(step);
    if (checkpoints.isEmpty()) {
      return new SizingTraits(Recovery.STARTS_OVER, Optional.empty(), workers, false);
    }
    Optional<Double> interval;
    if (checkpoints.get().everySeconds() > 0) {
      interval = Optional.of(checkpoints.get().everySeconds());
    } else {
      Double loop = lastMetrics.get("loop_seconds");
      Double written = lastMetrics.get("checkpoints_written");
      interval = loop != null && written != null && written > 0 ? Optional.of(loop / written) : Optional.empty();
    }
    return new SizingTraits(Recovery.RESUMES_FROM_CHECKPOINT, interval, workers, false);
  }

  @Override
  public void validate(StepConfig step) {
    TrainConfig.modelSpec(step);
    if (!step.string("workers").orElse("1").contains("${") && step.intValue("workers", 1) < 1) {
      throw step.invalid("workers", step.intValue("workers", 1) + " (expected at least 1)");
    }
    step.string("task").filter(t -> !t.contains("${")).ifPresent(t -> TrainConfig.task(step, t));
    TrainConfig.checkpointPolicy(step);
    TrainConfig.parallelism(step, TrainConfig.modelSpec(step));
    if (!step.string("max_attempts").orElse("1").contains("${") && step.intValue("max_attempts", 1) < 1) {
      throw step.invalid("max_attempts", step.intValue("max_attempts", 1) + " (expected at least 1)");
    }
  }

  /**
   * In a workflow that runs this step as its own application, on the workflow's executors: the statistics pass (rows,
   * mean/std, labels, NaN/Inf checks), then the input — and the validation input — standardised and split into one
   * shard per worker ({@link Shards}), so that the training application's GPU executors start with the training
   * itself: no shuffle, no Spark SQL, no evaluation job on them.
   */
  @Override
  public Map<String, Object> prepare(StepContext ctx) {
    Input in = Input.of(ctx, "input");
    StepConfig step = ctx.step();
    ctx.progress("reading the input: statistics of " + in.ref() + " (before the training application starts)");
    Dataset<Row> selected = in.selected().persist(org.apache.spark.storage.StorageLevel.MEMORY_AND_DISK());
    try {
      TrainingInput.Stats stats = TrainingInput.stats(step, selected, in.features(), in.label());
      Map<String, Object> prepared = new LinkedHashMap<>();
      prepared.put(PREPARED_STATS, stats.toMap());
      int workers = shardCount(step);
      if (workers < 1 || stats.rows() < workers) {
        return prepared; // the training application reports it, as it would without prepare
      }
      ctx.progress("staging the input for " + workers + " worker(s) (before the training application starts)");
      Input validation = step.has("validation") ? Input.of(ctx, "validation") : null;
      Shards shards = new Shards(ctx.scratchLocation(), workers, validation != null, ctx.hadoopConf());
      List<Integer> trainRows = shards.write(Shards.TRAIN, selected, in.features(), stats.mean(), stats.std());
      List<Integer> validationRows = validation == null ? List.of() : shards.write(Shards.VALIDATION,
          validation.selected(), validation.features(), stats.mean(), stats.std());
      prepared.put(PREPARED_SHARDS, shards.toMap(trainRows, validationRows));
      return prepared;
    } finally {
      selected.unpersist(false);
    }
  }

  /**
   * An input of the step as named by {@code field} ({@code input} or {@code validation}), with the step's
   * {@code label} and {@code features} selected.
   */
  private record Input(String ref, String label, TrainingInput.Features features, Dataset<Row> selected) {
    static Input of(StepContext ctx, String field) {
      StepConfig step = ctx.step();
      String label = step.requireString("label");
      String ref = step.requireString(field);
      Dataset<Row> input = ctx.input(field, ref);
      TrainingInput.Features features = TrainingInput.features(step, input.schema(), label, ref);
      return new Input(ref, label, features, TrainingInput.select(input, features, label));
    }
  }

  @Override
  public void run(StepContext ctx) throws Exception {
    StepConfig step = ctx.step();
    SparkContext context = ctx.spark().sparkContext();
    SecretTransport.warnIfExposed(context.getConf(), context.version());
    ModelSpec spec = TrainConfig.modelSpec(step);
    boolean shuffle = !"false".equalsIgnoreCase(TrainConfig.modelOption(step, TrainConfig.SHUFFLE, "true"));
    WorkerLoop.Schedule schedule = WorkerLoop.Schedule.parse(TrainConfig.modelOption(step, TrainConfig.LR_SCHEDULE, "constant"));
    int workers = step.intValue("workers", 1);
    if (workers < 1) {
      throw step.invalid("workers", workers + " (expected at least 1)");
    }
    Input in = Input.of(ctx, "input");
    if (ctx.prepared().get(PREPARED_STATS) instanceof Map<?, ?> stats) {
      // Statistics from the workflow's application (prepare), and its staged shards when it could make them; without
      // them the barrier stage reads the input once, not cached.
      Shards shards = ctx.prepared().get(PREPARED_SHARDS) instanceof Map<?, ?> m
          ? Shards.fromMap(m, ctx.hadoopConf()) : null;
      runOn(ctx, step, spec, shuffle, schedule, workers, in.label(), in.ref(), in.features(), in.selected(),
          TrainingInput.Stats.fromMap(stats), shards != null && shards.workers() == shardCount(step) ? shards
              : null);
      return;
    }
    // Read twice (statistics, training): keep it after the first read instead of decoding the source again.
    Dataset<Row> selected = in.selected().persist(org.apache.spark.storage.StorageLevel.MEMORY_AND_DISK());
    try {
      runOn(ctx, step, spec, shuffle, schedule, workers, in.label(), in.ref(), in.features(), selected, null, null);
    } finally {
      selected.unpersist(false);
    }
  }

  private void runOn(StepContext ctx, StepConfig step, ModelSpec spec, boolean shuffle, WorkerLoop.Schedule schedule,
      int workers, String label, String inputRef, TrainingInput.Features features, Dataset<Row> selected,
      TrainingInput.Stats prepared, Shards shards) throws Exception {
    long fitStart = System.nanoTime();
    if (prepared == null) {
      ctx.progress("reading the input: statistics of " + inputRef);
    } else {
      ctx.detail("statistics", "prepared in the workflow's application");
    }
    TrainingInput.Stats stats = prepared != null ? prepared : TrainingInput.stats(step, selected, features, label);

    Task task = step.string("task").map(t -> TrainConfig.task(step, t)).orElseGet(() -> inferTask(spec, stats));
    try {
      spec.checkTask(task);
    } catch (StagecraftException e) {
      throw step.invalid("model", e.getMessage());
    }
    int numClasses = task == Task.REGRESSION ? 0 : checkLabels(step, task, stats, label);
    if (stats.rows() < workers) {
      throw step.invalid("workers", workers + " workers but input '" + inputRef + "' has only " + stats.rows()
          + " rows (expected at most one worker per row)");
    }

    Parallelism parallelism = TrainConfig.parallelism(step, spec);
    PipelineTask.Setup pipeline = null;
    if (parallelism.pipelined()) {
      pipeline = PipelineTask.setup(step, parallelism, spec, stats.numFeatures(), task.numOutputs(numClasses));
      if (shards == null) {
        // Every stage of a replica reads the replica's rows: staged once, one shard per replica.
        Input validation = step.has("validation") ? Input.of(ctx, "validation") : null;
        shards = PipelineTask.stage(ctx, selected, features, stats, parallelism.replicas(workers), validation == null
            ? null : validation.selected(), validation == null ? null : validation.features());
      }
      ctx.detail("pipeline", PipelineTask.plan(pipeline, workers));
      ctx.progress(PipelineTask.planLine(pipeline, workers));
    }
    SparkContext sc = ctx.spark().sparkContext();
    Duration timeout = Duration.ofSeconds(step.intValue("timeout_seconds", TrainConfig.DEFAULT_TIMEOUT_SECONDS));
    int maxAttempts = step.intValue("max_attempts", DEFAULT_MAX_ATTEMPTS);
    TrainTask.Checkpoints checkpoints = checkpoints(ctx, step, spec, task, numClasses, features, stats, workers,
        shuffle, label, pipeline == null ? "" : pipeline.layout());
    TrainTask work = new TrainTask(spec.toMap(), task, numClasses, features, stats.mean(), stats.std(), shuffle,
        schedule, checkpoints, shards, pipeline);
    FrameIntegrity integrity = integrity(ctx.collectiveIntegrity(), step.id());
    // Recorded once: the ledger serialises the list as it stands when the step ends, failed or not.
    List<Map<String, Object>> attempts = new ArrayList<>();
    ctx.detail("training_attempts", attempts);
    List<TrainTask.Outcome> outcomes = null;
    long start = System.nanoTime();
    // Planned (and its code generated) while executors may still be starting — in a training application of its own
    // they are GPU executors, paid from the moment they register. The profile lands on the barrier stage: the
    // repartition's shuffle read is in the same stage. Retries run the same RDD (its shuffle output is reused where it
    // survived).
    // With staged shards the partitions carry only the rank: the tasks read their shard themselves.
    @SuppressWarnings("unchecked")
    org.apache.spark.api.java.JavaRDD<Object> partitions = (org.apache.spark.api.java.JavaRDD<Object>)
        (org.apache.spark.api.java.JavaRDD<?>) (shards != null
            ? ctx.withStepResources(org.apache.spark.api.java.JavaSparkContext.fromSparkContext(sc)
                .parallelize(java.util.stream.IntStream.range(0, workers).boxed().toList(), workers))
            : ctx.withStepResources(selected.repartition(workers).javaRDD()));
    if (shards != null) {
      ctx.detail("input", "staged in the workflow's application, one shard per worker");
    }
    for (int attempt = 1; outcomes == null; attempt++) {
      // A retry follows lost workers: their replacements may take a while to register.
      SlotCheck.require(sc, step.id(), workers, SLOT_WAIT, attempt == 1 ? SlotCheck.STABLE : SLOT_WAIT);
      Map<String, Object> record = java.util.Collections.synchronizedMap(new LinkedHashMap<>());
      record.put("attempt", attempt);
      record.put("started", Instant.now().toString());
      attempts.add(record);
      java.util.concurrent.atomic.AtomicLong resumedFrom = new java.util.concurrent.atomic.AtomicLong(-1);
      java.util.function.Consumer<String> progress = line -> {
        if (line.startsWith(CheckpointWriter.EVENT_PREFIX)) {
          // Also in the driver's log and in this attempt's record: the console shows only the latest progress line.
          LOG.warn("Step '{}': {}", step.id(), line);
          record.merge("checkpoint_write_failures", 1, (a, b) -> (Integer) a + (Integer) b);
        }
        if (line.startsWith(TrainTask.RESUME_EVENT)) {
          String digits = line.substring(TrainTask.RESUME_EVENT.length()).replaceAll("\\D.*", "");
          resumedFrom.set(Long.parseLong(digits));
        }
        ctx.progress(line);
      };
      try {
        ctx.progress("starting " + workers + " barrier task(s)" + (attempt > 1 ? ", attempt " + attempt : ""));
        outcomes = BarrierGroup.run(partitions, ctx.runId() + "/" + step.id() + "/" + System.nanoTime(), timeout,
            integrity, progress, work);
        record.put("resumed_from_step", Math.max(0, resumedFrom.get()));
      } catch (Exception e) {
        // The user should see our message, not Spark's wrapper around it.
        Exception shown = StagecraftException.find(e).<Exception>map(x -> x).orElse(e);
        record.put("resumed_from_step", Math.max(0, resumedFrom.get()));
        record.put("error", StagecraftException.firstLine(String.valueOf(shown.getMessage())));
        ErrorCategory category = StagecraftException.categoryOf(shown);
        if (category == ErrorCategory.USER || category == ErrorCategory.RESOURCE || attempt >= maxAttempts) {
          if (attempt >= maxAttempts && attempt > 1) {
            throw new StagecraftException(category, "Training failed in all " + maxAttempts + " attempts; the last: "
                + StagecraftException.firstLine(String.valueOf(shown.getMessage())), shown);
          }
          throw shown;
        }
        LOG.warn("Training attempt {} of {} of step '{}' failed: {}; retrying{}", attempt, maxAttempts, step.id(),
            StagecraftException.firstLine(String.valueOf(shown.getMessage())), checkpoints == null ? " from the start (no checkpoints)"
                : " from the latest checkpoint");
        ctx.progress("attempt " + attempt + " failed (" + StagecraftException.firstLine(String.valueOf(shown.getMessage())) + "); retrying");
      }
    }
    long fitEnd = System.nanoTime();
    double seconds = (fitEnd - start) / 1e9;
    TrainTask.Outcome lead = outcomes.stream().filter(o -> o.rank() == 0).findFirst()
        .orElseThrow(() -> new StagecraftException(ErrorCategory.INTERNAL, "rank 0 returned no result"));
    for (TrainTask.Outcome o : outcomes) {
      LOG.info("Worker {} ran on {} ({}, GPU {}) with {} rows", o.rank(), o.host(), o.device(),
          o.gpu().orElse("none"), o.rows());
    }

    float[] parameters = pipeline == null ? lead.parameters()
        : PipelineTask.assemble(outcomes, parallelism.pipeline());
    Map<String, Double> metrics = new LinkedHashMap<>();
    Map<String, Object> measured = null;
    if (pipeline != null) {
      measured = PipelineTask.measured(pipeline, workers, outcomes);
      ctx.progress(PipelineTask.measuredLine(pipeline, outcomes));
    }
    ctx.progress("evaluating");
    if (pipeline != null) {
      ctx.detail("pipeline", measured);
      // No stage holds the whole model: the put-together model scores the rows in a job, as infer would.
      metrics.putAll(Evaluator.evaluate(selected, features, stats.mean(), stats.std(), spec.toMap(), task,
          numClasses, parameters, "train_"));
    } else {
      // Who waited on whom in the all-reduce, and which rank's links held the ring back (three or more ranks).
      ctx.detail("allreduce_waits", RingWaits.perRank(outcomes));
      Map<String, Object> slowest = RingWaits.slowest(outcomes);
      if (!slowest.isEmpty()) {
        ctx.detail("allreduce_slowest_rank", slowest);
      }
      // The training metrics came back with the workers (each summarised its own rows), and so did the validation
      // metrics when the validation set was staged; otherwise validation takes a job.
      metrics.putAll(Evaluator.metrics(merged(outcomes, TrainTask.Outcome::trainSummary), task, "train_"));
    }
    if (pipeline == null && shards != null && shards.hasValidation()) {
      metrics.putAll(Evaluator.metrics(merged(outcomes, TrainTask.Outcome::validationSummary), task, "validation_"));
    } else if (step.has("validation")) {
      Input validation = Input.of(ctx, "validation");
      metrics.putAll(Evaluator.evaluate(validation.selected(), validation.features(), stats.mean(), stats.std(),
          spec.toMap(), task, numClasses, parameters, "validation_"));
    }
    metrics.put("samples_per_second", lead.samples() / Math.max(1e-9, lead.seconds()));
    metrics.put("training_seconds", seconds);
    // Where rank 0's training loop spent its time: forward/backward vs the per-step all-reduce.
    metrics.put("compute_seconds", lead.computeSeconds());
    metrics.put("allreduce_seconds", lead.exchangeSeconds());
    metrics.put("loop_seconds", lead.seconds());
    if (measured != null) {
      metrics.put("pipeline_bubble", ((Number) measured.get("bubble_measured")).doubleValue());
      metrics.put("pipeline_bubble_theoretical", ((Number) measured.get("bubble_theoretical")).doubleValue());
    }
    metrics.put("training_attempts", (double) attempts.size());
    metrics.put("resumed_from_step", (double) lead.resumedFromStep());
    if (lead.checkpoints() != null) {
      metrics.put("checkpoints_written", (double) lead.checkpoints().written());
      metrics.put("checkpoints_deferred", (double) lead.checkpoints().skipped());
      metrics.put("checkpoint_failures", (double) lead.checkpoints().failed());
      metrics.put("checkpoints_abandoned", (double) lead.checkpoints().abandoned());
      metrics.put("checkpoint_bytes", (double) lead.checkpoints().bytes());
      metrics.put("checkpoint_write_seconds", lead.checkpoints().writeSeconds());
      metrics.put("checkpoint_pause_seconds", lead.pauseSeconds());
      Map<String, Object> writes = new LinkedHashMap<>();
      writes.put("written", lead.checkpoints().written());
      writes.put("failed", lead.checkpoints().failed());
      writes.put("abandoned", lead.checkpoints().abandoned());
      writes.put("write_timeout_seconds", checkpoints.policy().writeTimeoutSeconds());
      writes.put("pause_seconds", lead.pauseSeconds());
      writes.put("longest_wait_seconds", lead.checkpoints().longestWaitSeconds());
      ctx.detail("checkpoint_writes", writes);
    }
    // Statistics pass + barrier stage: what a fit costs, without evaluation and bundle writing.
    metrics.put("fit_seconds", (fitEnd - fitStart) / 1e9);
    metrics.put("final_loss", lead.lossCurve().isEmpty() ? Double.NaN
        : lead.lossCurve().get(lead.lossCurve().size() - 1)[2]);
    metrics.forEach(ctx::metric);

    String modelName = step.string("name").orElse(step.id());
    String uri = ctx.modelLocation("model", modelName);
    writeBundle(ctx, uri, modelName, spec, task, numClasses, features, stats, metrics, lead, parameters, outcomes,
        shuffle,
        workers);
  }

  /** One shard per data-parallel worker, or per replica of a pipeline (all its stages read the replica's rows). */
  private static int shardCount(StepConfig step) {
    int workers = step.intValue("workers", 1);
    Parallelism p = TrainConfig.parallelism(step, TrainConfig.modelSpec(step));
    return p == null ? workers : p.replicas(workers);
  }

  /**
   * How the ring protects its frames: the step's policy's {@code collectives.integrity} (checked when the policies
   * were read), else {@link FrameIntegrity#DEFAULT}.
   */
  static FrameIntegrity integrity(Optional<String> fromPolicy, String stepId) {
    FrameIntegrity integrity = fromPolicy.map(FrameIntegrity::parse).orElse(FrameIntegrity.DEFAULT);
    if (integrity == FrameIntegrity.NONE) {
      LOG.info("Step '{}': the ring's frames are not protected (collectives.integrity: none): for trusted networks "
          + "only", stepId);
    }
    return integrity;
  }

  /** The workers' summaries of one dataset, merged. */
  private static Evaluator.Summary merged(List<TrainTask.Outcome> outcomes,
      java.util.function.Function<TrainTask.Outcome, Evaluator.Summary> summary) {
    return outcomes.stream().map(summary).reduce(Evaluator.Summary::merge).orElseThrow();
  }

  /**
   * The step's checkpoint setup, or null without a {@code checkpoint} map. Starting fresh discards what is there;
   * otherwise a store holding another configuration's checkpoints is refused here, before any worker starts.
   */
  private static TrainTask.Checkpoints checkpoints(StepContext ctx, StepConfig step, ModelSpec spec, Task task,
      int numClasses, TrainingInput.Features features, TrainingInput.Stats stats, int workers, boolean shuffle,
      String label, String layout) throws IOException {
    java.util.Optional<CheckpointPolicy> policy = TrainConfig.checkpointPolicy(step);
    if (policy.isEmpty()) {
      return null;
    }
    String fingerprint = fingerprint(spec, task, numClasses, features, stats, workers, shuffle, label) + layout;
    CheckpointLocation location = new CheckpointLocation(ctx.checkpointLocation(), policy.get().keep(),
        ctx.hadoopConf());
    CheckpointStore store = location.open();
    if (policy.get().resume() == CheckpointPolicy.Resume.FRESH) {
      int discarded = store.discardAfter(-1);
      if (discarded > 0) {
        LOG.info("Starting fresh (checkpoint.resume: fresh): deleted {} checkpoint(s) under {}", discarded,
            store.root());
      }
    } else {
      store.requireCompatible(fingerprint);
    }
    ctx.detail("checkpoints", store.root().toString());
    return new TrainTask.Checkpoints(location, policy.get(), fingerprint);
  }

  /**
   * What a checkpoint must match to be resumed from: the network and optimizer, the task and labels, the features
   * and their statistics (the same data), the workers, batch size, seed and shuffling (the same order of batches).
   * Epochs, learning rate and schedule may change between runs: a resume then continues with the new values.
   */
  static String fingerprint(ModelSpec spec, Task task, int numClasses, TrainingInput.Features features,
      TrainingInput.Stats stats, int workers, boolean shuffle, String label) {
    Map<String, Object> m = new java.util.TreeMap<>(spec.toMap());
    m.remove("epochs");
    m.remove("lr");
    StringBuilder b = new StringBuilder().append(m).append('|').append(task).append('|').append(numClasses)
        .append('|').append(features).append('|').append(label).append('|').append(stats.rows()).append('|')
        .append(java.util.Arrays.toString(stats.mean())).append(java.util.Arrays.toString(stats.std()))
        .append('|').append(workers).append('|').append(shuffle);
    return dev.stagecraft.fs.VerifiedFiles.sha256(b.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8))
        .substring(0, 16);
  }

  private static Task inferTask(ModelSpec spec, TrainingInput.Stats stats) {
    if (spec.type() == ModelSpec.Type.LINEAR) {
      return Task.REGRESSION;
    }
    return stats.labelMax() > 1 ? Task.MULTICLASS : Task.BINARY;
  }

  /** Classification labels must be class indices 0..k-1; returns k. */
  private static int checkLabels(StepConfig step, Task task, TrainingInput.Stats stats, String label) {
    if (stats.fractionalLabels() > 0 || stats.labelMin() < 0) {
      throw step.invalid("label", "column '" + label + "' has values in [" + stats.labelMin() + ", "
          + stats.labelMax() + "]" + (stats.fractionalLabels() > 0 ? ", " + stats.fractionalLabels()
          + " of them not whole numbers" : "") + " (expected class indices 0, 1, … for a " + task.label()
          + " task; for real-valued labels use task: regression)");
    }
    int k = (int) stats.labelMax() + 1;
    if (task == Task.BINARY && k > 2) {
      throw step.invalid("label", "column '" + label + "' has " + k + " classes (expected 0 and 1 for a binary task; "
          + "use task: multiclass)");
    }
    return Math.max(2, k);
  }

  private static void writeBundle(StepContext ctx, String uri, String modelName, ModelSpec spec, Task task,
      int numClasses, TrainingInput.Features features, TrainingInput.Stats stats, Map<String, Double> metrics,
      TrainTask.Outcome lead, float[] parameters, List<TrainTask.Outcome> outcomes, boolean shuffle, int workers)
      throws IOException {
    Map<String, Object> model = new LinkedHashMap<>(spec.toMap());
    model.put("task", task.label());
    model.put("num_features", stats.numFeatures());
    model.put("num_classes", numClasses);
    Map<String, Object> training = new LinkedHashMap<>();
    training.put("workers", workers);
    training.put("shuffle", shuffle);
    training.put("lr_schedule", TrainConfig.modelOption(ctx.step(), TrainConfig.LR_SCHEDULE, "constant"));
    training.put("rows", stats.rows());
    training.put("steps", lead.steps());
    training.put("samples", lead.samples());
    training.put("seconds", lead.seconds());
    List<Object> placement = new ArrayList<>();
    for (TrainTask.Outcome o : outcomes) {
      placement.add(Map.of("rank", o.rank(), "host", o.host(), "device", o.device(), "gpu", o.gpu().orElse(""),
          "rows", o.rows()));
    }
    training.put("placement", placement);
    List<Double> labels = new ArrayList<>();
    for (int c = 0; task != Task.REGRESSION && c < numClasses; c++) {
      labels.add((double) c);
    }
    ByteArrayOutputStream weights = new ByteArrayOutputStream();
    ParameterFile.write(parameters, weights);
    StringBuilder csv = new StringBuilder("step,epoch,loss\n");
    double[] xs = new double[lead.lossCurve().size()];
    double[] ys = new double[xs.length];
    for (int i = 0; i < xs.length; i++) {
      double[] p = lead.lossCurve().get(i);
      csv.append((long) p[0]).append(',').append((int) p[1]).append(',').append(p[2]).append('\n');
      xs[i] = p[0];
      ys[i] = p[2];
    }
    byte[] png = new LineChart("Training loss — " + modelName, "step", "loss (mean over the global batch)")
        .add(new LineChart.Series("train", xs, ys)).png(800, 480);
    BundleManifest manifest = new BundleManifest(BundleManifest.FORMAT_VERSION, modelName,
        new Path(uri).getName(), Instant.now().toString(), ctx.runId(), ctx.step().id(), model,
        TrainingInput.featureNames(features, stats.numFeatures()), features.vectorColumn().orElse(null),
        ctx.step().requireString("label"), new BundleManifest.Standardization(stats.mean(), stats.std()), labels,
        metrics, training, null);
    Map<String, byte[]> files = new LinkedHashMap<>();
    files.put(ModelBundle.WEIGHTS, weights.toByteArray());
    files.put("loss.csv", csv.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
    files.put(ModelBundle.LOSS_CURVE, png);
    Path dir = new Path(uri);
    ModelBundle.write(dir.getFileSystem(ctx.hadoopConf()), dir, manifest, files);
  }
}
