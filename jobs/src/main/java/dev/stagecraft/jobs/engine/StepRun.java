package dev.stagecraft.jobs.engine;

import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.lit;

import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import java.io.IOException;
import java.net.URI;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Consumer;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.resource.ResourceProfile;
import org.apache.spark.sql.AnalysisException;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Observation;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.SparkSession;

/** The {@link StepContext} of one step attempt: outputs go to the attempt's folder until the engine commits them. */
final class StepRun implements StepContext {
  private final String runId;
  private final StepConfig step;
  private final SparkSession session;
  private final Workspace workspace;
  private final Path attemptDir;
  private final String workflowDir;
  private final Set<String> upstream;
  private final Map<String, OutputRecord> outputs = Collections.synchronizedMap(new LinkedHashMap<>());
  private final Map<String, Double> metrics = Collections.synchronizedMap(new LinkedHashMap<>());
  private final Map<String, Object> details = Collections.synchronizedMap(new LinkedHashMap<>());
  private final List<Path> extraDirs = Collections.synchronizedList(new ArrayList<>());
  private final int attempt;
  private final Consumer<String> onProgress;
  private final Optional<ResourceProfile> profile;
  /** The step's policy's {@code collectives.integrity}, if it sets one. */
  private final Optional<String> collectiveIntegrity;
  private volatile Map<String, Object> prepared = Map.of();

  StepRun(String runId, StepConfig step, SparkSession session, Workspace workspace, Path attemptDir, int attempt,
      String workflowDir, Set<String> upstream, Consumer<String> onProgress,
      Optional<ResourceProfile> profile, Optional<String> collectiveIntegrity) {
    this.profile = profile;
    this.collectiveIntegrity = collectiveIntegrity;
    this.attempt = attempt;
    this.onProgress = onProgress;
    this.runId = runId;
    this.step = step;
    this.session = session;
    this.workspace = workspace;
    this.attemptDir = attemptDir;
    this.workflowDir = workflowDir;
    this.upstream = upstream;
  }

  /** What the step's {@code prepare} returned in the run that launched this attempt as its own application. */
  void prepared(Map<String, Object> values) {
    this.prepared = Collections.unmodifiableMap(new LinkedHashMap<>(values));
  }

  @Override
  public Optional<String> collectiveIntegrity() {
    return collectiveIntegrity;
  }

  @Override
  public Map<String, Object> prepared() {
    return prepared;
  }

  @Override
  public <T> JavaRDD<T> withStepResources(JavaRDD<T> rdd) {
    return profile.map(rdd::withResources).orElse(rdd);
  }

  @Override
  public String runId() {
    return runId;
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
    if (upstream.contains(reference)) {
      return session.table(reference);
    }
    String path = resolvePath(reference);
    try {
      return session.read().parquet(path);
    } catch (Exception e) { // Scala's AnalysisException is checked in Java's eyes but never declared
      if (e instanceof AnalysisException) {
        throw step.invalid(field, "'" + reference + "' is neither an upstream step nor a readable Parquet path ("
            + Attempts.oneLine(e) + ")");
      }
      throw (RuntimeException) e;
    }
  }

  @Override
  public String resolvePath(String path) {
    if (URI.create(path.replace(" ", "%20")).getScheme() != null || path.startsWith("/")) {
      return path;
    }
    return workflowDir + "/" + path;
  }

  @Override
  public long writeTable(String output, Dataset<Row> data) {
    Path dir = new Path(attemptDir, output);
    // Count the rows as they are written (one pass), not with a second job.
    Observation rows = new Observation("stagecraft-rows-" + output);
    data.observe(rows, count(lit(1)).as("rows")).write().mode(SaveMode.ErrorIfExists).parquet(dir.toString());
    long n;
    try {
      n = ((Number) rows.getAsJava().get("rows")).longValue();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("Interrupted while counting the rows of output '" + output + "'", e);
    }
    outputs.put(output, OutputRecord.table(qualified(dir), n, data.schema().json()));
    return n;
  }

  @Override
  public String scratchLocation() {
    return qualified(workspace.scratchDir(runId, step.id(), attempt));
  }

  @Override
  public String outputLocation(String output) {
    Path dir = new Path(attemptDir, output);
    try {
      workspace.fs().mkdirs(dir);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot create %s: %s", dir, e.getMessage());
    }
    String uri = qualified(dir);
    outputs.put(output, OutputRecord.directory(uri));
    return uri;
  }

  @Override
  public String modelLocation(String output, String modelName) {
    if (!modelName.matches("[A-Za-z0-9][A-Za-z0-9._-]*")) {
      throw step.invalid("name", "'" + modelName + "' is not a valid model name (expected letters, digits, '.', '_' "
          + "or '-')");
    }
    Path dir = new Path(workspace.root(), "models/" + modelName + "/" + runId + "-" + step.id() + "-" + attempt);
    try {
      workspace.fs().delete(dir, true); // a crashed attempt with this number may have left files
      workspace.fs().mkdirs(dir);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot create %s: %s", dir, e.getMessage());
    }
    extraDirs.add(dir);
    String uri = qualified(dir);
    outputs.put(output, OutputRecord.directory(uri));
    return uri;
  }

  @Override
  public void progress(String status) {
    onProgress.accept(status);
  }

  /** Folders outside the attempt folder that this attempt wrote (deleted if it fails). */
  List<Path> extraDirs() {
    synchronized (extraDirs) {
      return List.copyOf(extraDirs);
    }
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
  public String checkpointLocation() {
    return qualified(new Path(workspace.root(), "checkpoints/" + runId + "/" + step.id()));
  }

  Map<String, Object> details() {
    synchronized (details) {
      return new LinkedHashMap<>(details);
    }
  }

  Map<String, OutputRecord> outputs() {
    synchronized (outputs) {
      return new LinkedHashMap<>(outputs);
    }
  }

  Map<String, Double> metrics() {
    synchronized (metrics) {
      return new LinkedHashMap<>(metrics);
    }
  }

  private String qualified(Path p) {
    return workspace.fs().makeQualified(p).toString();
  }
}
