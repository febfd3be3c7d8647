package dev.stagecraft.inference.spark;

import static dev.stagecraft.spi.FieldSpec.Type.ANY;
import static dev.stagecraft.spi.FieldSpec.Type.INPUT;
import static dev.stagecraft.spi.FieldSpec.Type.INTEGER;
import static dev.stagecraft.spi.FieldSpec.Type.MAP;
import static dev.stagecraft.spi.FieldSpec.Type.NUMBER;
import static dev.stagecraft.spi.FieldSpec.Type.STRING;
import static dev.stagecraft.spi.FieldSpec.Type.STRING_LIST;

import dev.stagecraft.inference.bundle.BundleManifest;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.inference.bundle.NetworkShape;
import dev.stagecraft.inference.rapids.GpuPlans;
import dev.stagecraft.inference.score.OnnxScorer;
import dev.stagecraft.spark.SparkShim;
import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.SizingTraits;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.NumericType;
import org.apache.spark.sql.types.StructType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code infer}: scores a dataset with a Stagecraft model bundle (DJL on PyTorch) or an {@code .onnx} model (ONNX
 * Runtime), writing predictions ({@code ${steps.ID.output}}) and bad rows with their reason
 * ({@code ${steps.ID.quarantine}}).
 *
 * <p>Order of work: read the model's description on the driver (bundle manifest, or the ONNX model's inputs and
 * outputs) and check the input's schema against it, failing before anything is scored; build the preprocessing as
 * SQL expressions ({@link FeaturePlan}); in one pass, score each partition in Arrow batches ({@link ScoringTask}) with
 * the model loaded once per executor, writing the predictions into the attempt's folder while each task sets its bad
 * rows aside ({@link QuarantineFiles}); then check {@code max_bad_fraction} and write the quarantine beside the
 * predictions. The engine commits the attempt's folder with the step: a failed or retried attempt leaves nothing
 * visible, a re-run writes a new attempt.
 */
public final class InferStep implements StepKind {
  private static final Logger LOG = LoggerFactory.getLogger(InferStep.class);

  // Workflow keys, each beside its default.
  static final String MODEL = "model";
  static final String INPUT_FIELD = "input";
  static final String PREPROCESS = "preprocess";
  static final String FEATURES = "features";
  static final String ID_COLUMNS = "id_columns";
  static final String BATCH_SIZE = "batch_size";
  static final int BATCH_SIZE_DEFAULT = 1024;
  static final String MAX_BAD_FRACTION = "max_bad_fraction";
  static final double MAX_BAD_FRACTION_DEFAULT = 0.01;
  static final String OUTPUT = "output";
  static final String PREDICTION_DEFAULT = "prediction";
  static final String PROBABILITY_DEFAULT = "probability";
  /** The quarantine's reason column. */
  public static final String REASON = "reason";
  /** The view name a {@code preprocess} query reads the input from. */
  public static final String INPUT_VIEW = "input";

  @Override
  public String name() {
    return "infer";
  }

  @Override
  public List<FieldSpec> fields() {
    return List.of(
        FieldSpec.required(MODEL, STRING, "a model bundle (e.g. ${steps.train.model}) or an .onnx file"),
        FieldSpec.required(INPUT_FIELD, INPUT, "an earlier step's id or a Parquet path"),
        FieldSpec.optional(PREPROCESS, ANY, "a list of Spark SQL expressions, or a SQL query reading the view "
            + "'input'"),
        FieldSpec.optional(FEATURES, STRING_LIST, "for an ONNX model: its feature columns in order, or one array/"
            + "vector column"),
        FieldSpec.optional(ID_COLUMNS, STRING_LIST, "columns carried to the output and quarantine (default: every "
            + "column that is not a feature)"),
        FieldSpec.optional(BATCH_SIZE, INTEGER, "rows per scoring batch (default " + BATCH_SIZE_DEFAULT + ")"),
        FieldSpec.optional(MAX_BAD_FRACTION, NUMBER, "the largest share of bad rows, 0 to 1 (default "
            + MAX_BAD_FRACTION_DEFAULT + ")"),
        FieldSpec.optional(OUTPUT, MAP, "output column names: { prediction: NAME, probability: NAME }"));
  }

  @Override
  public List<String> outputs() {
    return List.of("output", "quarantine");
  }

  /**
   * Right-sizing: Spark re-runs a lost scoring task and the output is the same (each task's quarantine file is named
   * only when its attempt is accepted), and scoring tasks keep no state on a GPU, so several may share one.
   */
  @Override
  public SizingTraits sizing(StepConfig step, Map<String, Double> lastMetrics) {
    return new SizingTraits(SizingTraits.Recovery.RERUNS_LOST_TASKS, Optional.empty(), 0, true);
  }

  @Override
  public void validate(StepConfig step) {
    if (!step.string(BATCH_SIZE).orElse("1").contains("${") && step.intValue(BATCH_SIZE, 1) < 1) {
      throw step.invalid(BATCH_SIZE, step.intValue(BATCH_SIZE, 1) + " (expected at least 1)");
    }
    step.string(MAX_BAD_FRACTION).filter(s -> !s.contains("${")).ifPresent(s -> maxBadFraction(step));
    for (String k : step.stringMap(OUTPUT).keySet()) {
      if (!k.equals(PREDICTION_DEFAULT) && !k.equals(PROBABILITY_DEFAULT)) {
        throw step.invalid(OUTPUT + "." + k, "unknown field (expected one of: prediction, probability)");
      }
    }
    Object pre = step.fields().get(PREPROCESS);
    if (pre instanceof Map) {
      throw step.invalid(PREPROCESS, "is a map (expected a list of SQL expressions or one SQL query)");
    }
    String model = step.string(MODEL).orElse("");
    if (isOnnx(model) && step.stringList(FEATURES).isEmpty()) {
      throw step.invalid(FEATURES, "is missing (expected the ONNX model's feature columns in order, or one "
          + "array/vector column)");
    }
  }

  static boolean isOnnx(String model) {
    return model.toLowerCase(Locale.ROOT).endsWith(".onnx");
  }

  private static double maxBadFraction(StepConfig step) {
    String s = step.string(MAX_BAD_FRACTION).orElse(String.valueOf(MAX_BAD_FRACTION_DEFAULT));
    double v;
    try {
      v = Double.parseDouble(s.trim());
    } catch (NumberFormatException e) {
      throw step.invalid(MAX_BAD_FRACTION, "'" + s + "' is not a number (expected 0 to 1)");
    }
    if (!(v >= 0 && v <= 1)) {
      throw step.invalid(MAX_BAD_FRACTION, s + " (expected 0 to 1)");
    }
    return v;
  }

  /** What the driver knows about the model before scoring. */
  record Plan(ModelRef ref, FeaturePlan.Source source, OutputHead head, String labelColumn) {}

  @Override
  public void run(StepContext ctx) throws Exception {
    StepConfig step = ctx.step();
    long start = System.nanoTime();
    int batchSize = step.intValue(BATCH_SIZE, BATCH_SIZE_DEFAULT);
    if (batchSize < 1) {
      throw step.invalid(BATCH_SIZE, batchSize + " (expected at least 1)");
    }
    double maxBad = maxBadFraction(step);
    String inputRef = step.requireString(INPUT_FIELD);
    Dataset<Row> input = preprocess(ctx.spark(), step, ctx.input(INPUT_FIELD, inputRef));
    String modelUri = ctx.resolvePath(step.requireString(MODEL));
    ctx.progress("reading model " + modelUri);
    Plan plan = plan(ctx, step, modelUri, input.schema());

    List<String> ids = step.has(ID_COLUMNS) ? step.stringList(ID_COLUMNS) : defaultIds(input.schema(), plan);
    FeaturePlan.check(input.schema(), plan.source(), ids, modelUri, inputRef);
    Set<String> taken = new LinkedHashSet<>(plan.head().names());
    for (String id : ids) {
      if (taken.contains(id) || id.equals(REASON)) {
        throw step.invalid(ID_COLUMNS, "column '" + id + "' clashes with an output column (rename it in "
            + "'preprocess', or the output with 'output')");
      }
    }
    configure(ctx.spark(), plan.source()); // the step's session is its own: other steps keep their settings
    Dataset<Row> prepared = FeaturePlan.apply(input, plan.source(), ids);
    GpuPlans.record(step.id(), prepared); // the preprocessing: every operator should be GPU-eligible

    // One pass: the output's write job reads the input, scores it and writes the scored rows, while each task writes
    // its bad rows to a quarantine file of its own (QuarantineFiles); no scored row is kept or computed twice.
    StructType idSchema = new StructType(java.util.Arrays.copyOf(prepared.schema().fields(), ids.size()));
    StructType quarantineSchema = idSchema.add(REASON, DataTypes.StringType, true);
    QuarantineFiles quarantine = QuarantineFiles.create(ctx.spark(), ctx.scratchLocation() + "/quarantine",
        quarantineSchema);
    int labelIndex = -1;
    if (plan.labelColumn() != null && plan.head().names().size() == 2) {
      int i = ids.indexOf(plan.labelColumn());
      labelIndex = i >= 0 && idSchema.fields()[i].dataType() instanceof NumericType ? i : -1;
    }
    var sc = ctx.spark().sparkContext();
    ScoringTask.Metrics metrics = new ScoringTask.Metrics(sc.longAccumulator("infer.scored"),
        sc.longAccumulator("infer.bad"), sc.longAccumulator("infer.correct"), sc.longAccumulator("infer.batches"),
        sc.longAccumulator("infer.fill_ns"), sc.longAccumulator("infer.score_ns"),
        sc.collectionAccumulator("infer.placements"));
    LAST.set(metrics);
    Dataset<Row> scored = score(ctx.spark(), prepared, idSchema, plan, batchSize, labelIndex, quarantine, metrics,
        ctx);
    ctx.progress("scoring with " + (plan.ref().kind() == ModelRef.Kind.BUNDLE ? "DJL" : "ONNX Runtime")
        + " and writing the predictions");
    long scoreStart = System.nanoTime();
    long good = ctx.writeTable("output", scored);
    double scoreSeconds = (System.nanoTime() - scoreStart) / 1e9;
    // Exact: the tasks ran in the write's result stage, whose accumulator updates count once per partition.
    List<QuarantineFiles.File> files = quarantine.accepted();
    long bad = files.stream().mapToLong(QuarantineFiles.File::rows).sum();
    long total = good + bad;
    double fraction = total == 0 ? 0 : (double) bad / total;
    ctx.metric("rows", total);
    ctx.metric("bad_rows", bad);
    ctx.metric("bad_fraction", fraction);
    if (fraction > maxBad) {
      // The attempt fails: its staged output is never committed.
      String example = files.stream().sorted(java.util.Comparator.comparing(QuarantineFiles.File::path))
          .map(QuarantineFiles.File::firstReason).findFirst().orElse("");
      throw StagecraftException.user("%s: %d of %d rows (%.2f%%) cannot be scored, more than %s %s allows "
          + "(%.2f%%); for example: %s", step.where(MAX_BAD_FRACTION), bad, total, 100 * fraction, "the step's",
          MAX_BAD_FRACTION, 100 * maxBad, example);
    }
    if (labelIndex >= 0 && good > 0) {
      ctx.metric("accuracy", (double) metrics.correct().value() / good);
    }
    ctx.progress("writing " + bad + " quarantined row(s)");
    Dataset<Row> quarantined = files.isEmpty()
        ? ctx.spark().createDataFrame(List.of(), quarantineSchema)
        : ctx.spark().read().schema(quarantineSchema)
            .parquet(files.stream().map(QuarantineFiles.File::path).toArray(String[]::new));
    long written = ctx.writeTable("quarantine", quarantined);
    if (written != bad) {
      throw new IllegalStateException("The quarantine output holds " + written + " rows but the scoring tasks set "
          + bad + " aside (expected the same count)");
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    ctx.metric("scored_rows", good);
    ctx.metric("score_seconds", scoreSeconds);
    ctx.metric("seconds", seconds);
    ctx.metric("rows_per_second", total / Math.max(1e-9, seconds));
    ctx.metric("scoring_rows_per_second", total / Math.max(1e-9, scoreSeconds));
  }

  private static Dataset<Row> score(SparkSession spark, Dataset<Row> prepared, StructType idSchema, Plan plan,
      int batchSize, int labelIndex, QuarantineFiles quarantine, ScoringTask.Metrics metrics, StepContext ctx) {
    DataType[] idTypes = new DataType[idSchema.size()];
    for (int i = 0; i < idTypes.length; i++) {
      idTypes[i] = idSchema.fields()[i].dataType();
    }
    ScoringTask task = new ScoringTask(plan.ref(), idTypes, FeaturePlan.layout(plan.source(), prepared.schema()),
        batchSize, plan.head(), labelIndex, quarantine, metrics);
    // The step's resource profile (e.g. GPU executors, fractional task GPUs) applies to the scoring stage.
    JavaRDD<InternalRow> rows = ctx.withStepResources(prepared.queryExecution().toRdd().toJavaRDD().mapPartitions(task));
    // Rows stay in Spark's internal form both ways: no conversion to and from external Rows per row.
    return SparkShim.internalCreateDataFrame(spark, rows.rdd(), plan.head().schema(idSchema));
  }

  /**
   * Whole-stage code generation inlines every feature's expression into one generated method; past 8,000 bytes of
   * bytecode HotSpot leaves such a method interpreted, which made the preprocessing of a9a's 123 features several
   * times slower than the Parquet scan (profiled). Without it, Spark splits the projection into small methods.
   */
  private static void configure(SparkSession session, FeaturePlan.Source source) {
    if (source.numFeatures() > FeaturePlan.MAX_FUSED_FEATURES && !source.wholeArray()) {
      session.conf().set("spark.sql.codegen.wholeStage", "false");
    }
  }

  /**
   * The rows an {@code infer} step with model bundle {@code bundleUri} scores from the Parquet table {@code input}:
   * its SQL preprocessing, in a session of its own set up as the step's (for benchmarks: what reading and
   * preprocessing cost without the model).
   */
  public static Dataset<Row> preprocessed(SparkSession spark, String bundleUri, String input, List<String> ids)
      throws IOException {
    SparkSession session = spark.newSession();
    Path path = new Path(bundleUri);
    org.apache.hadoop.conf.Configuration conf = session.sessionState().newHadoopConf();
    Plan plan = bundlePlan(path.getFileSystem(conf), path, bundleUri, conf, PREDICTION_DEFAULT, PROBABILITY_DEFAULT);
    configure(session, plan.source());
    return FeaturePlan.apply(session.read().parquet(input), plan.source(), ids);
  }

  /** How many times any model was loaded in this JVM's executor cache (local mode: the driver's; for tests). */
  public static long modelLoads() {
    return ScoringTask.CACHE.loads();
  }

  /**
   * Where the tasks of the most recent {@code infer} step in this application ran: one line per task, {@code
   * executor=ID partition=P gpu=ADDRESS device=DEVICE loads=N} (loads of that model in that executor so far).
   */
  public static List<String> lastPlacements() {
    ScoringTask.Metrics m = LAST.get();
    return m == null ? List.of() : List.copyOf(m.placements().value());
  }

  /**
   * Totals over the tasks of the most recent {@code infer} step planned in this JVM (for benchmarks): {@code batches},
   * {@code scored_rows}, {@code bad_rows}, {@code fill_seconds} (reading rows into Arrow and building output rows)
   * and {@code score_seconds} (in the runtime), summed over the accepted task attempts.
   */
  public static Map<String, Double> lastTimings() {
    ScoringTask.Metrics m = LAST.get();
    if (m == null) {
      return Map.of();
    }
    return Map.of("batches", (double) m.batches().value(), "scored_rows", (double) m.scoredRows().value(),
        "bad_rows", (double) m.badRows().value(), "fill_seconds", m.fillNanos().value() / 1e9,
        "score_seconds", m.scoreNanos().value() / 1e9);
  }

  /** The accumulators of the most recent {@code infer} step planned in this JVM (for tests and benchmarks). */
  static final java.util.concurrent.atomic.AtomicReference<ScoringTask.Metrics> LAST =
      new java.util.concurrent.atomic.AtomicReference<>();

  private static Dataset<Row> preprocess(SparkSession spark, StepConfig step, Dataset<Row> input) {
    Object pre = step.fields().get(PREPROCESS);
    if (pre == null) {
      return input;
    }
    try {
      if (pre instanceof List<?>) {
        return input.selectExpr(step.stringList(PREPROCESS).toArray(new String[0]));
      }
      input.createOrReplaceTempView(INPUT_VIEW);
      return spark.sql(pre.toString());
    } catch (Exception e) { // AnalysisException/ParseException: checked in Java's eyes, never declared by Scala
      if (e instanceof RuntimeException re && StagecraftException.find(re).isPresent()) {
        throw re;
      }
      throw step.invalid(PREPROCESS, StagecraftException.firstLine(e.getMessage()));
    }
  }

  private static List<String> defaultIds(StructType schema, Plan plan) {
    Set<String> features = new LinkedHashSet<>();
    plan.source().inputColumns().forEach(c -> features.add(c.toLowerCase(Locale.ROOT)));
    List<String> ids = new ArrayList<>();
    for (String n : schema.fieldNames()) {
      if (!features.contains(n.toLowerCase(Locale.ROOT)) && !plan.head().names().contains(n)) {
        ids.add(n);
      }
    }
    return ids;
  }

  private static Plan plan(StepContext ctx, StepConfig step, String uri, StructType schema) throws IOException {
    Path path = new Path(uri);
    FileSystem fs = path.getFileSystem(ctx.hadoopConf());
    Map<String, String> names = step.stringMap(OUTPUT);
    String prediction = names.getOrDefault(PREDICTION_DEFAULT, PREDICTION_DEFAULT);
    String probability = names.getOrDefault(PROBABILITY_DEFAULT, PROBABILITY_DEFAULT);
    if (!isOnnx(uri)) {
      if (step.has(FEATURES)) {
        throw step.invalid(FEATURES, "is set for a model bundle (expected it only for an ONNX model: a bundle names "
            + "its own features)");
      }
      return bundlePlan(fs, path, uri, ctx.hadoopConf(), prediction, probability);
    }
    return onnxPlan(ctx, step, fs, path, uri);
  }

  private static Plan bundlePlan(FileSystem fs, Path path, String uri, org.apache.hadoop.conf.Configuration conf,
      String prediction, String probability) throws IOException {
    ModelBundle bundle = ModelBundle.open(fs, path);
    BundleManifest m = bundle.manifest();
    NetworkShape shape = NetworkShape.fromManifest(m.model(), uri);
    BundleManifest.FileEntry weights = m.files().get(ModelBundle.WEIGHTS);
    if (weights == null) {
      throw StagecraftException.user("Invalid model bundle %s: no %s in its manifest", uri, ModelBundle.WEIGHTS);
    }
    BundleManifest.Standardization st = m.standardization();
    double[] mean = st == null ? null : st.mean();
    double[] std = st == null ? null : st.std();
    if (mean != null && mean.length != shape.numFeatures()) {
      throw StagecraftException.user("Invalid model bundle %s: standardisation for %d features (expected %d)", uri,
          mean.length, shape.numFeatures());
    }
    FeaturePlan.Source source = m.featureColumn() != null
        ? new FeaturePlan.Source(List.of(), m.featureColumn(), shape.numFeatures(), mean, std)
        : new FeaturePlan.Source(m.features(), null, shape.numFeatures(), mean, std);
    if (source.vector() == null && m.features().size() != shape.numFeatures()) {
      throw StagecraftException.user("Invalid model bundle %s: %d feature names for %d features", uri,
          m.features().size(), shape.numFeatures());
    }
    ModelRef ref = new ModelRef(ModelRef.Kind.BUNDLE, fs.makeQualified(path).toString(), weights.sha256(), shape,
        0, ModelRef.conf(conf));
    OutputHead head = OutputHead.forBundle(shape.task(), m.labels(), shape.numOutputs(), prediction, probability);
    return new Plan(ref, source, head, shape.task().equals("regression") ? null : m.labelColumn());
  }

  private static Plan onnxPlan(StepContext ctx, StepConfig step, FileSystem fs, Path path, String uri)
      throws IOException {
    byte[] bytes;
    try {
      bytes = ModelRef.readAll(fs, path);
    } catch (java.io.FileNotFoundException e) {
      throw step.invalid(MODEL, "no ONNX model at " + uri);
    }
    List<String> features = step.stringList(FEATURES);
    String qualified = fs.makeQualified(path).toString();
    try (OnnxScorer probe = new OnnxScorer(qualified, bytes, features.size(), 1)) {
      int n = probe.numFeatures();
      boolean vector = features.size() == 1 && n > 1;
      if (!vector && features.size() != n) {
        throw step.invalid(FEATURES, features.size() + " column(s) but ONNX model " + uri + " takes " + n
            + " features (input '" + probe.inputName() + "')");
      }
      FeaturePlan.Source source = vector ? new FeaturePlan.Source(List.of(), features.get(0), n, null, null)
          : new FeaturePlan.Source(features, null, n, null, null);
      ModelRef ref = new ModelRef(ModelRef.Kind.ONNX, qualified, ModelRef.sha256(bytes), null, features.size(),
          ModelRef.conf(ctx.hadoopConf()));
      return new Plan(ref, source, OutputHead.forOnnx(probe.outputs()), null);
    }
  }
}
