package dev.stagecraft.training.spark;

import static dev.stagecraft.spi.FieldSpec.Type.INPUT;
import static dev.stagecraft.spi.FieldSpec.Type.INTEGER;
import static dev.stagecraft.spi.FieldSpec.Type.MAP;
import static dev.stagecraft.spi.FieldSpec.Type.STRING;
import static dev.stagecraft.spi.FieldSpec.Type.STRING_LIST;

import dev.stagecraft.chart.LineChart;
import dev.stagecraft.inference.bundle.BundleManifest;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.inference.model.ParameterFile;
import dev.stagecraft.training.model.Task;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
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
 * the driver's rendezvous; run the barrier stage; evaluate; write the bundle (manifest last).
 */
public final class TrainStep implements StepKind {
  private static final Logger LOG = LoggerFactory.getLogger(TrainStep.class);
  /** Extra keys of {@code model:} beyond {@link ModelSpec#KEYS}. */
  static final String SHUFFLE = "shuffle";
  static final String LR_SCHEDULE = "lr_schedule";
  static final List<String> TASKS = List.of("binary", "multiclass", "regression");
  /** How long the driver waits for executors to offer enough slots before it fails the step. */
  static final Duration SLOT_WAIT = Duration.ofSeconds(60);

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
        FieldSpec.optional("task", STRING, "one of: " + String.join(", ", TASKS)),
        FieldSpec.optional("name", STRING, "the model's name under models/ (default: the step id)"),
        FieldSpec.optional("timeout_seconds", INTEGER, "how long a worker waits for its peers (default 120)"));
  }

  @Override
  public List<String> outputs() {
    return List.of("model");
  }

  @Override
  public void validate(StepConfig step) {
    modelSpec(step);
    if (!step.string("workers").orElse("1").contains("${") && step.intValue("workers", 1) < 1) {
      throw step.invalid("workers", step.intValue("workers", 1) + " (expected at least 1)");
    }
    step.string("task").filter(t -> !t.contains("${")).ifPresent(t -> task(step, t));
  }

  static ModelSpec modelSpec(StepConfig step) {
    Map<String, Object> raw = modelMap(step);
    Set<String> allowed = new TreeSet<>(ModelSpec.KEYS);
    allowed.add(SHUFFLE);
    allowed.add(LR_SCHEDULE);
    for (String k : raw.keySet()) {
      if (!allowed.contains(k)) {
        throw step.invalid("model." + k, "unknown field (expected one of: " + String.join(", ", allowed) + ")");
      }
    }
    Map<String, Object> values = new LinkedHashMap<>(raw);
    values.remove(SHUFFLE);
    Object schedule = values.remove(LR_SCHEDULE);
    if (schedule != null && !schedule.toString().contains("${")) {
      try {
        WorkerLoop.Schedule.parse(schedule.toString());
      } catch (IllegalArgumentException e) {
        throw step.invalid("model." + LR_SCHEDULE, e.getMessage().replace("Invalid lr_schedule: ", ""));
      }
    }
    if (values.values().stream().anyMatch(v -> v != null && v.toString().contains("${"))) {
      return null; // checked when the step runs, once substituted
    }
    try {
      return ModelSpec.fromMap(values);
    } catch (StagecraftException e) {
      throw step.invalid("model", e.getMessage());
    }
  }

  /** The {@code model} map as written (values may be lists, e.g. {@code hidden}). */
  @SuppressWarnings("unchecked")
  static Map<String, Object> modelMap(StepConfig step) {
    Object m = step.fields().get("model");
    if (!(m instanceof Map<?, ?>)) {
      throw step.invalid("model", "is missing or not a map (expected a map with 'type' and training settings)");
    }
    return (Map<String, Object>) m;
  }

  private static String modelOption(StepConfig step, String key, String defaultValue) {
    Object v = modelMap(step).get(key);
    return v == null ? defaultValue : v.toString();
  }

  private static Task task(StepConfig step, String value) {
    if (!TASKS.contains(value.toLowerCase(Locale.ROOT))) {
      throw step.invalid("task", "unknown task '" + value + "' (expected one of: " + String.join(", ", TASKS) + ")");
    }
    return Task.valueOf(value.toUpperCase(Locale.ROOT));
  }

  @Override
  public void run(StepContext ctx) throws Exception {
    StepConfig step = ctx.step();
    ModelSpec spec = modelSpec(step);
    boolean shuffle = !"false".equalsIgnoreCase(modelOption(step, SHUFFLE, "true"));
    WorkerLoop.Schedule schedule = WorkerLoop.Schedule.parse(modelOption(step, LR_SCHEDULE, "constant"));
    int workers = step.intValue("workers", 1);
    if (workers < 1) {
      throw step.invalid("workers", workers + " (expected at least 1)");
    }
    String label = step.requireString("label");
    String inputRef = step.requireString("input");
    Dataset<Row> input = ctx.input("input", inputRef);
    TrainingInput.Features features = TrainingInput.features(step, input.schema(), label, inputRef);
    // Read three times (statistics, training, evaluation): keep it after the first read instead of decoding the
    // source again.
    Dataset<Row> selected = TrainingInput.select(input, features, label)
        .persist(org.apache.spark.storage.StorageLevel.MEMORY_AND_DISK());
    try {
      runOn(ctx, step, spec, shuffle, schedule, workers, label, inputRef, features, selected);
    } finally {
      selected.unpersist(false);
    }
  }

  private void runOn(StepContext ctx, StepConfig step, ModelSpec spec, boolean shuffle, WorkerLoop.Schedule schedule,
      int workers, String label, String inputRef, TrainingInput.Features features, Dataset<Row> selected)
      throws Exception {
    long fitStart = System.nanoTime();
    ctx.progress("reading the input: statistics of " + inputRef);
    TrainingInput.Stats stats = TrainingInput.stats(step, selected, features, label);

    Task task = step.string("task").map(t -> task(step, t)).orElseGet(() -> inferTask(spec, stats));
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

    SparkContext sc = ctx.spark().sparkContext();
    SlotCheck.require(sc, step.id(), workers, SLOT_WAIT);

    Duration timeout = Duration.ofSeconds(step.intValue("timeout_seconds", 120));
    List<TrainTask.Outcome> outcomes;
    long start = System.nanoTime();
    try {
      TrainTask work = new TrainTask(spec.toMap(), task, numClasses, features, stats.mean(), stats.std(), shuffle,
          schedule);
      ctx.progress("starting " + workers + " barrier task(s)");
      outcomes = BarrierGroup.run(selected.repartition(workers).javaRDD(),
          ctx.runId() + "/" + step.id() + "/" + System.nanoTime(), timeout, ctx::progress, work);
    } catch (RuntimeException e) {
      // The user should see our message, not Spark's wrapper around it.
      throw StagecraftException.find(e).<RuntimeException>map(x -> x).orElse(e);
    }
    long fitEnd = System.nanoTime();
    double seconds = (fitEnd - start) / 1e9;
    TrainTask.Outcome lead = outcomes.stream().filter(o -> o.rank() == 0).findFirst()
        .orElseThrow(() -> new StagecraftException(ErrorCategory.INTERNAL, "rank 0 returned no result"));
    for (TrainTask.Outcome o : outcomes) {
      LOG.info("Worker {} ran on {} ({}, GPU {}) with {} rows", o.rank(), o.host(), o.device(),
          o.gpu().orElse("none"), o.rows());
    }

    ctx.progress("evaluating");
    Map<String, Double> metrics = new LinkedHashMap<>(Evaluator.evaluate(selected, features, stats.mean(),
        stats.std(), spec.toMap(), task, numClasses, lead.parameters(), "train_"));
    if (step.has("validation")) {
      String vref = step.requireString("validation");
      Dataset<Row> validation = ctx.input("validation", vref);
      TrainingInput.Features vf = TrainingInput.features(step, validation.schema(), label, vref);
      metrics.putAll(Evaluator.evaluate(TrainingInput.select(validation, vf, label), vf, stats.mean(), stats.std(),
          spec.toMap(), task, numClasses, lead.parameters(), "validation_"));
    }
    metrics.put("samples_per_second", lead.samples() / Math.max(1e-9, lead.seconds()));
    metrics.put("training_seconds", seconds);
    // Where rank 0's training loop spent its time: forward/backward vs the per-step all-reduce.
    metrics.put("compute_seconds", lead.computeSeconds());
    metrics.put("allreduce_seconds", lead.exchangeSeconds());
    metrics.put("loop_seconds", lead.seconds());
    // Statistics pass + barrier stage: what a fit costs, without evaluation and bundle writing.
    metrics.put("fit_seconds", (fitEnd - fitStart) / 1e9);
    metrics.put("final_loss", lead.lossCurve().isEmpty() ? Double.NaN
        : lead.lossCurve().get(lead.lossCurve().size() - 1)[2]);
    metrics.forEach(ctx::metric);

    String modelName = step.string("name").orElse(step.id());
    String uri = ctx.modelLocation("model", modelName);
    writeBundle(ctx, uri, modelName, spec, task, numClasses, features, stats, metrics, lead, outcomes, shuffle,
        workers);
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
      TrainTask.Outcome lead, List<TrainTask.Outcome> outcomes, boolean shuffle, int workers) throws IOException {
    Map<String, Object> model = new LinkedHashMap<>(spec.toMap());
    model.put("task", task.label());
    model.put("num_features", stats.numFeatures());
    model.put("num_classes", numClasses);
    Map<String, Object> training = new LinkedHashMap<>();
    training.put("workers", workers);
    training.put("shuffle", shuffle);
    training.put("lr_schedule", modelOption(ctx.step(), LR_SCHEDULE, "constant"));
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
    ParameterFile.write(lead.parameters(), weights);
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
