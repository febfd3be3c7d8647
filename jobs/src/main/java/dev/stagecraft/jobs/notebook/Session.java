package dev.stagecraft.jobs.notebook;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.chart.BarChart;
import dev.stagecraft.jobs.cli.ConsoleProgress;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.LocalDirs;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spark.SparkSessions;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.spi.StagecraftException;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;
import org.apache.spark.sql.SparkSession;

/**
 * Stagecraft from a notebook cell (or any Java code): an embedded session — Spark in this JVM, a workspace in a
 * temporary folder or at a given URI — that loads or builds workflows, runs them (or one step, or a resume) with
 * progress printed as the cell's output, and hands back {@link Run}s whose ledger, tables, charts and metrics are
 * plain values.
 *
 * <pre>{@code
 * var session = Session.start();                       // local Spark, workspace in a temp folder
 * var wf = session.load("jobs/examples/a9a/workflow.yaml");
 * var run = session.run(wf);                           // progress lines in the cell
 * display(run.table().html(), "text/html");            // the ledger
 * display(run.lossCurve("fit"));                       // image/png
 * }</pre>
 *
 * <p>One workflow call runs at a time per session (calls are synchronized). {@link #launch} runs a workflow in a
 * child JVM instead (used to show recovery from a killed driver).
 */
public final class Session implements AutoCloseable {
  /** Spark on Java 17 needs these in any JVM that runs a driver (the same list as bin/stagecraft). */
  static final List<String> SPARK_JVM_FLAGS = List.of("-XX:+IgnoreUnrecognizedVMOptions",
      "--add-opens=java.base/java.lang=ALL-UNNAMED", "--add-opens=java.base/java.lang.invoke=ALL-UNNAMED",
      "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED", "--add-opens=java.base/java.io=ALL-UNNAMED",
      "--add-opens=java.base/java.net=ALL-UNNAMED", "--add-opens=java.base/java.nio=ALL-UNNAMED",
      "--add-opens=java.base/java.util=ALL-UNNAMED", "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
      "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
      "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED", "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
      "--add-opens=java.base/sun.nio.cs=ALL-UNNAMED", "--add-opens=java.base/sun.security.action=ALL-UNNAMED",
      "--add-opens=java.base/sun.util.calendar=ALL-UNNAMED", "-Djdk.reflect.useDirectMethodHandle=false",
      "-Dio.netty.tryReflectionSetAccessible=true");

  private final SparkSession spark;
  private final boolean ownsSpark;
  private final Workspace workspace;
  /** The temporary folder this session made for its workspace (deleted on close), if it made one. */
  private final Optional<Path> tempWorkspace;
  private final StepKinds kinds;
  private final WorkflowLoader loader;
  private final PrintStream out;

  private Session(SparkSession spark, boolean ownsSpark, Workspace workspace, Optional<Path> tempWorkspace,
      PrintStream out) {
    this.spark = spark;
    this.ownsSpark = ownsSpark;
    this.workspace = workspace;
    this.tempWorkspace = tempWorkspace;
    this.kinds = StepKinds.discover();
    this.loader = new WorkflowLoader(kinds);
    this.out = out;
  }

  /**
   * A session with the defaults: local Spark (at least 2 task slots), workspace in a new temporary folder (deleted by
   * {@link #close()}).
   */
  public static Session start() {
    return builder().start();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** How to start a session. */
  public static final class Builder {
    private String master = "local[" + Math.max(2, Runtime.getRuntime().availableProcessors()) + "]";
    private String workspace;
    private SparkSession spark;
    private boolean verbose;
    private PrintStream out;
    private final Map<String, String> conf = new LinkedHashMap<>();

    private Builder() {}

    /** The Spark master (default {@code local[N]}, N = the cores, at least 2 so two barrier workers fit). */
    public Builder master(String value) {
      this.master = requireNonNull(value, "master is null");
      return this;
    }

    /**
     * The workspace: a path or any Hadoop URI (file://, hdfs://, s3a://), kept after the session. Default: a new
     * temporary folder, deleted by {@link Session#close()}.
     */
    public Builder workspace(String uri) {
      this.workspace = requireNonNull(uri, "workspace is null");
      return this;
    }

    /** A Spark setting for the session this builder creates. */
    public Builder conf(String key, String value) {
      conf.put(requireNonNull(key, "key is null"), requireNonNull(value, "value is null"));
      return this;
    }

    /** Use an existing SparkSession; {@link Session#close()} then leaves it running. */
    public Builder spark(SparkSession existing) {
      this.spark = requireNonNull(existing, "spark is null");
      return this;
    }

    /** Keep Spark's own console logging (off by default, as in the CLI). */
    public Builder verbose() {
      this.verbose = true;
      return this;
    }

    /** Where progress goes (default: {@code System.out} at the time of each call, i.e. the running cell). */
    public Builder progressTo(PrintStream stream) {
      this.out = requireNonNull(stream, "stream is null");
      return this;
    }

    public Session start() {
      String ws = workspace;
      Optional<Path> temp = Optional.empty();
      if (ws == null) {
        try {
          temp = Optional.of(Files.createTempDirectory("stagecraft-notebook-"));
          ws = temp.get().toUri().toString();
        } catch (IOException e) {
          throw StagecraftException.external(e, "Cannot create a temporary workspace folder: %s", e.getMessage());
        }
      }
      SparkSession s = spark;
      boolean owns = false;
      if (s == null) {
        SparkSessions.configureLogging(verbose);
        SparkSession.Builder b = SparkSession.builder().appName("stagecraft notebook").master(master)
            .config(Settings.SCHEDULER_MODE_CONF, Settings.SCHEDULER_MODE_DEFAULT)
            .config(Settings.CONSOLE_PROGRESS_CONF, Settings.CONSOLE_PROGRESS_DEFAULT)
            .config(Settings.UI_ENABLED_CONF, "false");
        if (master.startsWith("local")) {
          b.config(Settings.DRIVER_HOST_CONF, "127.0.0.1").config(Settings.DRIVER_BIND_ADDRESS_CONF, "127.0.0.1");
        }
        conf.forEach(b::config);
        s = b.getOrCreate();
        owns = true;
      }
      Session session = new Session(s, owns, new Workspace(ws, s.sparkContext().hadoopConfiguration()), temp, out);
      session.out().println("Stagecraft session: Spark " + s.version() + " (" + s.sparkContext().master()
          + "), workspace " + session.workspace());
      return session;
    }
  }

  public SparkSession spark() {
    return spark;
  }

  /** The workspace URI (runs/, models/, checkpoints/ live under it). */
  public String workspace() {
    return workspace.uri();
  }

  private PrintStream out() {
    return out != null ? out : System.out;
  }

  /** Loads and validates a workflow file (relative paths in it are relative to its folder). */
  public Workflow load(String path) {
    Path file = Path.of(path);
    return new Workflow(loader, loader.load(file), readText(file), Optional.of(file), Map.of());
  }

  private static String readText(Path file) {
    try {
      return Files.readString(file);
    } catch (IOException e) {
      throw StagecraftException.user("Cannot read workflow %s: %s", file, e.getMessage());
    }
  }

  /** A workflow given as YAML text (relative paths are relative to the current folder). */
  public Workflow parse(String yaml) {
    String dir = Path.of("").toAbsolutePath().toUri().toString().replaceAll("/$", "");
    return new Workflow(loader, loader.parse("workflow (YAML text in a notebook)", yaml, dir), yaml,
        Optional.empty(), Map.of());
  }

  /** Starts building a workflow in code. */
  public Workflow.Builder workflow(String name) {
    return new Workflow.Builder(loader, name, Path.of("").toAbsolutePath().toUri().toString().replaceAll("/$", ""));
  }

  /** Runs the whole workflow as a new run (a new run id). Step failures do not throw: see {@link Run#status()}. */
  public Run run(Workflow workflow) {
    return run(workflow, newRunId());
  }

  /** Runs the whole workflow as run {@code runId}, which must not exist yet. */
  public Run run(Workflow workflow, String runId) {
    return execute(workflow, Engine.Options.run(runId), "run");
  }

  /** Continues run {@code runId}: re-runs only the steps that did not succeed (or changed since). */
  public Run resume(Workflow workflow, String runId) {
    return execute(workflow, Engine.Options.run(runId).withResume(), "resume");
  }

  /** Runs one step of run {@code runId} (its upstream steps must have succeeded in that run). */
  public Run runStep(Workflow workflow, String runId, String step) {
    workflow.step(step); // the message names the workflow's steps
    return execute(workflow, Engine.Options.run(runId).withOnlyStep(step), "step " + step);
  }

  /** A run that already exists in the workspace, as its ledger says now. */
  public Run open(String runId) {
    Workspace.checkRunId(runId);
    RunLedger ledger = new LedgerStore(workspace).read(runId).orElseThrow(() -> StagecraftException.user(
        "Cannot open run '%s': no ledger at %s", runId, workspace.ledgerDir(runId)));
    return new Run(ledger, workspace, spark);
  }

  private synchronized Run execute(Workflow workflow, Engine.Options options, String what) {
    Engine.Options opts = options.withWorkspace(workspace.uri()).withOverrides(workflow.overrides())
        .withCommand("notebook " + what + " of " + workflow.name());
    PrintStream stream = out();
    RunLedger ledger;
    try (ConsoleProgress progress = new ConsoleProgress(spark.sparkContext().statusTracker(), stream, false)) {
      ledger = new Engine(spark, kinds, progress).run(workflow.spec(), opts);
    }
    Run run = new Run(ledger, workspace, spark);
    stream.println("Run " + run.id() + " " + run.status());
    return run;
  }

  /**
   * Starts the workflow as run {@code runId} in a child JVM — the CLI, {@code stagecraft run}, with this JVM's
   * classpath, local Spark and this session's workspace — and returns at once. The child's output goes to a log file.
   * Used to show recovery: {@link ChildRun#kill()} it mid-training, then {@link #resume} here.
   */
  public ChildRun launch(Workflow workflow, String runId) {
    Workspace.checkRunId(runId);
    return ChildRun.start(workflow, runId, workspace, SPARK_JVM_FLAGS);
  }

  /**
   * Two runs' cost reports side by side in one chart: for every step (and the total), a bar per run, split into busy
   * and idle executor time's cost, and the drivers' cost (its own category, and in the total); the colours tell the
   * runs apart.
   *
   * @param labelA how run {@code a} is named in the legend (e.g. its policy)
   */
  public BufferedImage costChart(String labelA, Run a, String labelB, Run b) {
    CostReport ca = a.cost();
    CostReport cb = b.cost();
    if (!ca.currency().equals(cb.currency())) {
      throw StagecraftException.user("Cannot compare the cost of runs '%s' (%s) and '%s' (%s): different currencies",
          a.id(), ca.currency(), b.id(), cb.currency());
    }
    BarChart chart = new BarChart("Cost per step: " + labelA + " vs " + labelB + " (" + ca.currency() + ")",
        ca.currency(), List.of(labelA + " busy", labelA + " idle", labelB + " busy", labelB + " idle",
            labelA + " driver", labelB + " driver"));
    LinkedHashSet<String> steps = new LinkedHashSet<>(ca.steps().keySet());
    steps.addAll(cb.steps().keySet());
    List<String> order = new ArrayList<>(steps);
    if (!ca.drivers().isEmpty() || !cb.drivers().isEmpty()) {
      order.add(CostReport.DRIVERS);
    }
    order.add("total");
    for (String step : order) {
      CostReport.Line la = line(ca, step);
      CostReport.Line lb = line(cb, step);
      chart.add(new BarChart.Bar(step, new double[] {la == null ? 0 : la.busyCost(), la == null ? 0 : la.idleCost(),
          0, 0, la == null ? 0 : la.driverCost(), 0}));
      chart.add(new BarChart.Bar("", new double[] {0, 0, lb == null ? 0 : lb.busyCost(),
          lb == null ? 0 : lb.idleCost(), 0, lb == null ? 0 : lb.driverCost()}));
    }
    try {
      return Run.image(chart.png(Math.max(900, 60 * order.size() * 2), 480), "the comparison chart");
    } catch (IOException e) {
      throw new IllegalStateException("Cannot render the cost comparison: " + e.getMessage(), e);
    }
  }

  /** A step's line of a report, the total, or the drivers' (their cost only). */
  private static CostReport.Line line(CostReport r, String name) {
    if (name.equals("total")) {
      return r.total();
    }
    if (name.equals(CostReport.DRIVERS)) {
      double d = r.total().driverCost();
      return new CostReport.Line(d, 0, 0, d, 0, 0, 0, 0, 0, 0, null);
    }
    return r.steps().get(name);
  }

  /** A new run id from the time, as the CLI makes them. */
  public static String newRunId() {
    return ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + "-"
        + String.format("%04x", ThreadLocalRandom.current().nextInt(0x10000));
  }

  /** Stops Spark if this session started it, and deletes the workspace if it is the session's temporary folder. */
  @Override
  public void close() {
    try {
      if (ownsSpark) {
        spark.stop();
      }
    } finally {
      tempWorkspace.ifPresent(dir -> {
        try {
          LocalDirs.deleteTree(dir);
        } catch (IOException e) {
          // Never mask a failure of stop(); a left-over temporary folder is harmless.
          System.err.println("Cannot delete the session's temporary workspace " + dir + ": " + e);
        }
      });
    }
  }

  @Override
  public String toString() {
    return "Stagecraft session on " + spark.sparkContext().master() + ", workspace " + workspace.uri();
  }
}
