package dev.stagecraft.testing;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * A {@link StepContext} for testing a {@link StepKind} where it lives, without the engine: one attempt of one step on
 * a given Spark session, with everything the step writes under a test folder.
 *
 * <p>What the engine does and this does not: no ledger, no commit (a table output is readable as soon as it is
 * written, even if the attempt then fails), no resource profiles, no substitution of {@code ${…}} references (give
 * the step its final values). Upstream steps are tables registered with {@link #upstream}: like the engine, this
 * registers each as a temporary view named by the step id in the step's own session.
 *
 * <pre>{@code
 * TestStepContext ctx = TestStepContext.of(spark, StepConfig..., dir).upstream("raw", df);
 * new InferStep().run(ctx);
 * ctx.table("output").count();  ctx.metrics().get("rows");
 * }</pre>
 */
public final class TestStepContext implements StepContext {
  private final SparkSession session;
  private final StepConfig step;
  private final Path dir;
  private final Map<String, Dataset<Row>> upstream = new LinkedHashMap<>();
  private final Map<String, String> outputs = new LinkedHashMap<>();
  private final Map<String, Long> rowsWritten = new LinkedHashMap<>();
  private final Map<String, Double> metrics = new LinkedHashMap<>();
  private final Map<String, Object> details = new LinkedHashMap<>();
  private final List<String> progress = new ArrayList<>();
  private Map<String, Object> prepared = Map.of();

  private TestStepContext(SparkSession spark, StepConfig step, Path dir) {
    this.session = requireNonNull(spark, "spark is null").newSession();
    this.step = requireNonNull(step, "step is null");
    this.dir = requireNonNull(dir, "dir is null");
  }

  /** A context for one attempt of {@code step} on a new session of {@code spark}, writing under {@code dir}. */
  public static TestStepContext of(SparkSession spark, StepConfig step, Path dir) {
    return new TestStepContext(spark, step, dir);
  }

  /** A step as the workflow loader would give it: {@code fields} besides {@code id} and {@code kind}. */
  public static StepConfig step(String id, String kind, Map<String, Object> fields) {
    return new StepConfig("test.yaml", id, kind, List.of(), Optional.empty(), fields);
  }

  /**
   * Registers {@code data} as the committed table output of upstream step {@code id}: written as Parquet, as the
   * engine's outputs are, and read back in the step's session as a temporary view of that name.
   */
  public TestStepContext upstream(String id, Dataset<Row> data) {
    String uri = dir.resolve("upstream").resolve(id).toUri().toString();
    data.write().parquet(uri);
    Dataset<Row> table = session.read().parquet(uri);
    upstream.put(id, table);
    table.createOrReplaceTempView(id);
    return this;
  }

  /** What {@link StepKind#prepare} gave this attempt (as when the step runs as its own application). */
  public TestStepContext prepared(Map<String, Object> values) {
    this.prepared = Map.copyOf(values);
    return this;
  }

  /** The table output {@code name} as written, read back. */
  public Dataset<Row> table(String name) {
    String uri = outputs.get(name);
    if (uri == null || !rowsWritten.containsKey(name)) {
      throw new IllegalStateException("The step wrote no table output '" + name + "' (it wrote: " + outputs.keySet()
          + ")");
    }
    return session.read().parquet(uri);
  }

  /** Rows written to table output {@code name}, as {@link #writeTable} returned them. */
  public long rowsWritten(String name) {
    Long n = rowsWritten.get(name);
    if (n == null) {
      throw new IllegalStateException("The step wrote no table output '" + name + "'");
    }
    return n;
  }

  /** Every output's URI, by name, in the order the step registered them. */
  public Map<String, String> outputs() {
    return Map.copyOf(outputs);
  }

  public Map<String, Double> metrics() {
    return Map.copyOf(metrics);
  }

  public Map<String, Object> details() {
    return Map.copyOf(details);
  }

  /** The progress lines the step reported, in order. */
  public List<String> progressLines() {
    return List.copyOf(progress);
  }

  @Override
  public String runId() {
    return "test-run";
  }

  @Override
  public StepConfig step() {
    return step;
  }

  @Override
  public SparkSession spark() {
    return session;
  }

  @Override
  public Configuration hadoopConf() {
    return session.sparkContext().hadoopConfiguration();
  }

  @Override
  public Dataset<Row> input(String field, String reference) {
    Dataset<Row> table = upstream.get(reference);
    if (table != null) {
      return table;
    }
    String path = resolvePath(reference);
    try {
      return session.read().parquet(path);
    } catch (Exception e) { // Spark's AnalysisException is checked in Java's terms, but undeclared
      throw step.invalid(field, "'" + reference + "' is neither an upstream step nor a readable Parquet path ("
          + e.getMessage() + ")");
    }
  }

  @Override
  public long writeTable(String output, Dataset<Row> data) {
    String uri = register(output, dir.resolve("outputs").resolve(output));
    data.write().parquet(uri);
    long rows = session.read().parquet(uri).count();
    rowsWritten.put(output, rows);
    return rows;
  }

  @Override
  public String outputLocation(String output) {
    Path location = dir.resolve("outputs").resolve(output);
    register(output, location);
    return directory(location);
  }

  @Override
  public String modelLocation(String output, String modelName) {
    Path location = dir.resolve("models").resolve(modelName).resolve(runId() + "-" + step.id() + "-1");
    register(output, location);
    return directory(location);
  }

  @Override
  public String checkpointLocation() {
    return directory(dir.resolve("checkpoints").resolve(step.id()));
  }

  @Override
  public String scratchLocation() {
    return directory(dir.resolve("scratch").resolve(step.id()));
  }

  @Override
  public void progress(String status) {
    progress.add(status);
  }

  @Override
  public String resolvePath(String path) {
    return path.contains(":") || path.startsWith("/") ? path : dir.resolve(path).toString();
  }

  @Override
  public void metric(String name, double value) {
    metrics.put(name, value);
  }

  @Override
  public void detail(String name, Object value) {
    details.put(name, value);
  }

  @Override
  public Map<String, Object> prepared() {
    return prepared;
  }

  private String register(String output, Path location) {
    if (outputs.containsKey(output)) {
      throw StagecraftException.user("Output '%s' of step '%s' is written twice", output, step.id());
    }
    directory(location.getParent());
    outputs.put(output, location.toUri().toString());
    return location.toUri().toString();
  }

  private static String directory(Path p) {
    try {
      Files.createDirectories(p);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return p.toUri().toString();
  }
}
