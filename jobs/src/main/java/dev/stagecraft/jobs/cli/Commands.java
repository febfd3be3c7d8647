package dev.stagecraft.jobs.cli;

import dev.stagecraft.inference.rapids.GpuPlans;
import dev.stagecraft.jobs.airflow.AssetEventEmitter;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.CostFiles;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.engine.LocalDirs;
import dev.stagecraft.jobs.engine.OutputTables;
import dev.stagecraft.jobs.engine.Placement;
import dev.stagecraft.jobs.engine.SparkSubmitLauncher;
import dev.stagecraft.jobs.engine.StepLauncher;
import dev.stagecraft.jobs.ledger.Json;
import dev.stagecraft.jobs.ledger.Lease;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spark.SparkSessions;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.ThreadLocalRandom;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** The subcommands of {@code stagecraft}. */
public final class Commands {
  private Commands() {}

  /** Options shared by the commands that run workflows. */
  static class RunOptions {
    @Option(names = "--workspace", paramLabel = "URI",
        description = "Workspace (file://, hdfs://, s3a://, or a path); overrides the workflow's 'workspace'.")
    String workspace;

    @Option(names = "--set", paramLabel = "KEY=VALUE", description = "Override a workflow parameter (repeatable).")
    Map<String, String> overrides = new LinkedHashMap<>();

    @Option(names = "--airflow-asset-events", description = "When a step's outputs are committed, record an Airflow "
        + "asset event for each (stagecraft://WORKFLOW/STEP/OUTPUT, as exported DAGs declare them); Airflow's URL and "
        + "login as for `stagecraft airflow trigger`.")
    boolean airflowAssetEvents;
  }

  @Command(name = "run", mixinStandardHelpOptions = true,
      description = "Run a workflow: every step in dependency order; independent steps concurrently.")
  public static final class Run implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "WORKFLOW", description = "The workflow YAML file.")
    Path workflow;

    @Option(names = "--run-id", paramLabel = "ID", description = "The run's id (default: a new one from the time).")
    String runId;

    @Option(names = "--resume", description = "Continue run --run-id: re-run only the steps that did not succeed.")
    boolean resume;

    @Mixin RunOptions options = new RunOptions();

    @Spec CommandSpec spec;

    @Override
    public Integer call() {
      if (resume && runId == null) {
        throw StagecraftException.user("Invalid --resume: it needs --run-id (the run to continue)");
      }
      String id = runId != null ? runId : newRunId();
      return execute(workflow, id, resume, Optional.empty(), options, Verbosity.of(spec), "stagecraft run " + workflow,
          Optional.empty());
    }
  }

  @Command(name = "step", mixinStandardHelpOptions = true,
      description = "Run one step of a run (what an Airflow task calls); its upstream steps must have succeeded.")
  public static final class Step implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "WORKFLOW", description = "The workflow YAML file.")
    Path workflow;

    @Parameters(index = "1", paramLabel = "STEP", description = "The step id.")
    String step;

    @Option(names = "--run-id", required = true, paramLabel = "ID", description = "The run the step belongs to.")
    String runId;

    @Mixin RunOptions options = new RunOptions();

    @Spec CommandSpec spec;

    @Override
    public Integer call() {
      return execute(workflow, runId, false, Optional.of(step), options, Verbosity.of(spec),
          "stagecraft step " + workflow + " " + step, Optional.empty());
    }
  }

  @Command(name = "status", mixinStandardHelpOptions = true, description = "Show a run's ledger.")
  public static final class Status implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "RUN-ID")
    String runId;

    @Option(names = "--workspace", paramLabel = "URI", description = "The workspace (default: ./.stagecraft).")
    String workspace = Workspace.DEFAULT;

    @Option(names = "--json", description = "Print the ledger itself (JSON).")
    boolean json;

    @Override
    public Integer call() throws Exception {
      Workspace ws = new Workspace(workspace, new Configuration());
      RunLedger ledger = new LedgerStore(ws).read(runId).orElseThrow(() -> StagecraftException.user(
          "Cannot show run '%s': no ledger at %s", runId, ws.ledgerDir(runId)));
      if (json) {
        System.out.println(Json.MAPPER.writeValueAsString(ledger));
      } else {
        StatusTable.print(ledger, System.out);
      }
      return 0;
    }
  }

  @Command(name = "cost", mixinStandardHelpOptions = true,
      description = "Show a run's cost: per step and in total, busy vs idle executors, GPU utilisation.")
  public static final class Cost implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "RUN-ID")
    String runId;

    @Option(names = "--workspace", paramLabel = "URI", description = "The workspace (default: ./.stagecraft).")
    String workspace = Workspace.DEFAULT;

    @Override
    public Integer call() {
      Workspace.checkRunId(runId);
      Workspace ws = new Workspace(workspace, new Configuration());
      CostReport report = CostFiles.read(ws, runId).orElseThrow(
          () -> StagecraftException.user("Cannot show the cost of run '%s': no cost report at %s (only whole runs "
              + "are metered, not single steps)", runId, CostFiles.json(ws, runId)));
      CostTable.print(runId, report, ws.runDir(runId).toString(), System.out);
      return 0;
    }
  }

  @Command(name = "demo", mixinStandardHelpOptions = true,
      description = "Run the example workflow (jobs/examples/a9a) on local Spark, workspace ./.stagecraft.")
  public static final class Demo implements Callable<Integer> {
    @Mixin RunOptions options = new RunOptions();

    @Spec CommandSpec spec;

    @Override
    public Integer call() {
      Path workflow = exampleWorkflow();
      return execute(workflow, newRunId(), false, Optional.empty(), options, Verbosity.of(spec), "stagecraft demo",
          Optional.of("summary"));
    }

    static Path exampleWorkflow() {
      Path p = Path.of(Settings.home(), "jobs", "examples", "a9a", "workflow.yaml");
      if (!Files.isRegularFile(p)) {
        throw StagecraftException.user("Cannot find the example workflow %s (expected the Stagecraft repository; "
            + "run bin/stagecraft demo from it, or set %s to it)", p.toAbsolutePath().normalize(), Settings.HOME_ENV);
      }
      return p;
    }
  }

  @Command(name = "explain-gpu", mixinStandardHelpOptions = true,
      description = "Which operators of each sql/infer step the RAPIDS Accelerator would run on GPU, and why others "
          + "would not: runs the workflow on the CPU with RAPIDS in explain-only mode (workspace: a temporary folder "
          + "unless --workspace).")
  public static final class ExplainGpu implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "WORKFLOW", description = "The workflow YAML file.")
    Path workflow;

    @Mixin RunOptions options = new RunOptions();

    @Spec CommandSpec spec;

    @Override
    public Integer call() throws Exception {
      if (!GpuPlans.available()) {
        throw StagecraftException.user("Cannot explain GPU plans: the RAPIDS Accelerator (%s) is not on the "
            + "classpath (bin/stagecraft explain-gpu adds ~/.cache/stagecraft/rapids/*.jar, fetching it first)",
            GpuPlans.PLUGIN_CLASS);
      }
      // RAPIDS' shim loader needs a mutable class loader as the context loader, else ExplainPlan gives "".
      // (In a method of its own class: picocli inspects this class on a JVM without Spark for --help.)
      SparkClassLoaders.useMutableContextLoader();
      // No spark.plugins: the explain-only plugin breaks Observation metrics (CollectMetricsExec) the engine uses to
      // count rows; ExplainPlan only needs the jar on the classpath.
      GpuPlans.enable();
      Optional<Path> temp = Optional.empty();
      if (options.workspace == null) {
        temp = Optional.of(Files.createTempDirectory("stagecraft-explain-gpu"));
        options.workspace = temp.get().toUri().toString();
      }
      PrintStream out = System.out;
      int code;
      try {
        code = execute(workflow, newRunId(), false, Optional.empty(), options, Verbosity.of(spec),
            "stagecraft explain-gpu " + workflow, Optional.empty());
      } finally {
        if (temp.isPresent()) { // the reports are kept in memory; the run's outputs were only the means
          LocalDirs.deleteTree(temp.get());
        }
      }
      out.println();
      out.println("GPU plans (RAPIDS Accelerator, explain-only):");
      for (Map.Entry<String, String> e : GpuPlans.reports().entrySet()) {
        List<String> off = GpuPlans.notOnGpu(e.getValue());
        out.printf("%nstep %s: %s%n", e.getKey(), off.isEmpty() ? "every operator would run on the GPU"
            : off.size() + " operator(s)/expression(s) would stay on the CPU");
        for (String line : e.getValue().strip().split("\n")) {
          out.println("  " + line);
        }
      }
      return code;
    }
  }

  /**
   * Set when this process is a step's own application, launched by the run holding its lease (environment of
   * {@link SparkSubmitLauncher}).
   */
  private static Optional<Engine.LaunchedBy> launchedBy(Optional<String> only) {
    String token = System.getenv(Settings.PARENT_LEASE_ENV);
    String usage = System.getenv(Settings.USAGE_FILE_ENV);
    if (token == null || token.isBlank()) {
      return Optional.empty();
    }
    if (only.isEmpty() || usage == null || usage.isBlank()) {
      throw StagecraftException.user("%s is set (a step launched as its own application), but %s",
          Settings.PARENT_LEASE_ENV, only.isEmpty() ? "the command runs a whole workflow (expected `step`)"
              : Settings.USAGE_FILE_ENV + " is not");
    }
    String prepared = System.getenv(Settings.PREPARED_FILE_ENV);
    return Optional.of(new Engine.LaunchedBy(token, usage, prepared == null || prepared.isBlank() ? null : prepared));
  }

  /**
   * Loads, validates and runs; prints progress and a summary (and the first rows of step {@code preview}'s table);
   * returns the exit code.
   */
  static int execute(Path file, String runId, boolean resume, Optional<String> only, RunOptions options,
      boolean verbose, String command, Optional<String> preview) {
    Workspace.checkRunId(runId);
    StepKinds kinds = StepKinds.discover();
    WorkflowSpec spec = new WorkflowLoader(kinds).load(file); // everything is validated before Spark starts
    Placement placement = SparkSessions.placement(spec, kinds);
    // A step's own application (launched by its run: Placement) has its settings from the launcher.
    Optional<Engine.LaunchedBy> launchedBy = launchedBy(only);
    SparkSession spark = SparkSessions.create("stagecraft " + spec.name() + " " + runId, verbose,
        launchedBy.isPresent() ? Map.of() : SparkSessions.policyConf(spec, placement));
    PrintStream out = System.out;
    try (ConsoleProgress progress =
        new ConsoleProgress(spark.sparkContext().statusTracker(), out, ConsoleProgress.isTerminal())) {
      Engine.Options opts = Engine.Options.run(runId).withOverrides(options.overrides).withCommand(command);
      SparkConf conf = spark.sparkContext().getConf();
      Duration stale = Duration.ofMillis(
          conf.getTimeAsMs(Settings.LEASE_STALE_AFTER_CONF, Lease.DEFAULT_STALE_AFTER.toSeconds() + "s"));
      Duration beat = Duration.ofMillis(
          conf.getTimeAsMs(Settings.LEASE_HEARTBEAT_CONF, Lease.DEFAULT_HEARTBEAT.toSeconds() + "s"));
      if (beat.compareTo(stale) >= 0) {
        throw StagecraftException.user("Invalid %s=%ss: expected less than %s=%ss (a holder must renew its lease "
            + "before it goes stale)", Settings.LEASE_HEARTBEAT_CONF, beat.toMillis() / 1e3,
            Settings.LEASE_STALE_AFTER_CONF, stale.toMillis() / 1e3);
      }
      opts = opts.withLease(stale, beat);
      if (resume) {
        opts = opts.withResume();
      }
      if (options.workspace != null) {
        opts = opts.withWorkspace(options.workspace);
      }
      if (only.isPresent()) {
        opts = opts.withOnlyStep(only.get());
      }
      if (launchedBy.isPresent()) {
        opts = opts.withLaunchedBy(launchedBy.get());
      }
      EngineListener listener = progress;
      if (options.airflowAssetEvents) {
        listener = new AssetEventEmitter(progress, AirflowCommands.Connection::fromEnvironment, spec.name(),
            System.err);
      }
      Optional<StepLauncher> launcher = placement.ownApplication().isEmpty()
          ? Optional.empty()
          : Optional.of(SparkSubmitLauncher.forThisProcess(spark.sparkContext().getConf()));
      RunLedger ledger = new Engine(spark, kinds, listener, placement, launcher).run(spec, opts);
      progress.close();
      summarize(ledger, only, file, out);
      preview.map(s -> ledger.step(s).outputs().get("output")).ifPresent(o -> {
        out.println();
        out.println("First rows of " + o.uri() + ":");
        OutputTables.read(spark, o).show(20, false);
      });
      // The demo (and every whole run) ends with the cost report.
      if (only.isEmpty()) {
        Workspace ws = new Engine(spark, kinds, progress).workspace(spec, opts);
        CostFiles.read(ws, runId).ifPresent(report -> {
          out.println();
          CostTable.print(runId, report, ws.runDir(runId).toString(), out);
        });
      }
      if (ledger.status() == RunStatus.FAILED
          || only.map(s -> ledger.step(s).status() != StepStatus.SUCCEEDED).orElse(false)) {
        throw new StagecraftException(ErrorCategory.INTERNAL, failureLine(ledger, only, file));
      }
      return 0;
    } finally {
      spark.stop();
    }
  }

  private static void summarize(RunLedger ledger, Optional<String> only, Path file, PrintStream out) {
    out.println();
    out.println((only.isPresent() ? "Step " + only.get() + " of run " : "Run ") + ledger.runId() + " "
        + (only.isPresent() ? ledger.step(only.get()).status() : ledger.status()));
    for (Map.Entry<String, StepRecord> e : ledger.steps().entrySet()) {
      if (only.isPresent() && !only.get().equals(e.getKey())) {
        continue;
      }
      for (Map.Entry<String, OutputRecord> o : e.getValue().outputs().entrySet()) {
        out.printf("  ${steps.%s.%s} = %s%n", e.getKey(), o.getKey(), o.getValue().uri());
      }
    }
    for (Map.Entry<String, StepRecord> e : ledger.steps().entrySet()) {
      Map<String, Double> m = e.getValue().metrics();
      if (m.containsKey("scored_rows") && (only.isEmpty() || only.get().equals(e.getKey()))) {
        // An infer step: what the demo promises to show (accuracy when the input had the model's label column).
        out.printf("Scored %,d rows with step %s (%,d quarantined) at %,.0f rows/s%s%n", m.get("scored_rows").longValue(),
            e.getKey(), m.getOrDefault("bad_rows", 0.0).longValue(), m.getOrDefault("rows_per_second", 0.0),
            m.containsKey("accuracy") ? String.format(", accuracy %.4f", m.get("accuracy")) : "");
      }
    }
    out.println("Ledger: " + ledger.workspace() + "/runs/" + ledger.runId() + "/ledger/  (stagecraft status "
        + ledger.runId() + " --workspace " + ledger.workspace() + ")");
  }

  private static String failureLine(RunLedger ledger, Optional<String> only, Path file) {
    StringBuilder s = new StringBuilder();
    for (Map.Entry<String, StepRecord> e : ledger.steps().entrySet()) {
      if (e.getValue().status() == StepStatus.FAILED && (only.isEmpty() || only.get().equals(e.getKey()))) {
        String error = e.getValue().error().replaceAll("\\.+$", "");
        s.append("step '").append(e.getKey()).append("' failed: ").append(error);
        break;
      }
    }
    s.append(s.length() == 0 ? "run " + ledger.runId() + " failed" : "");
    s.append(". Resume with: stagecraft run ").append(file).append(" --run-id ").append(ledger.runId())
        .append(" --resume");
    return s.toString();
  }

  static String newRunId() {
    return ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + "-"
        + String.format("%04x", ThreadLocalRandom.current().nextInt(0x10000));
  }
}
