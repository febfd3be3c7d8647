package dev.stagecraft.jobs.cli;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.jobs.airflow.AirflowClient;
import dev.stagecraft.jobs.airflow.AirflowCredentials;
import dev.stagecraft.jobs.airflow.DagExporter;
import dev.stagecraft.jobs.airflow.DagRun;
import dev.stagecraft.jobs.airflow.TaskInstance;
import dev.stagecraft.jobs.airflow.TaskSettings;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code stagecraft airflow …}: export a workflow as an Airflow DAG; trigger, wait for and show DAG runs. */
@Command(name = "airflow", mixinStandardHelpOptions = true,
    description = "Airflow 3: export a workflow as a DAG; trigger, wait for and show DAG runs (REST API /api/v2).",
    subcommands = {
      AirflowCommands.ExportDag.class,
      AirflowCommands.Trigger.class,
      AirflowCommands.Wait.class,
      AirflowCommands.Status.class
    })
public final class AirflowCommands implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(),
        "Missing command (export-dag, trigger, wait, status)");
  }

  @Command(name = "export-dag", mixinStandardHelpOptions = true,
      description = "Write WORKFLOW as an Airflow 3 DAG file DIR/DAG_ID.py: one SparkSubmitOperator per step "
          + "(`stagecraft step … --run-id <Airflow's run id>`), dependencies as in the workflow, outputs as assets.")
  public static final class ExportDag implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "WORKFLOW", description = "The workflow YAML file.")
    Path workflow;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Folder to write the DAG file into "
        + "(e.g. Airflow's DAGs folder).")
    Path out;

    @Option(names = "--dag-id", paramLabel = "ID", description = "The DAG id (default: stagecraft_<workflow name>).")
    String dagId;

    @Option(names = "--jar", paramLabel = "PATH", description = "The shaded jar as Airflow's workers see it "
        + "(default: this one). A run's conf may override it: {\"jar\": …}.")
    String jar;

    @Option(names = "--workspace", paramLabel = "URI", description = "The workspace every task uses (default: the "
        + "workflow's, else ./.stagecraft made absolute). A run's conf may override it: {\"workspace\": …}.")
    String workspace;

    @Option(names = "--workflow-path", paramLabel = "PATH", description = "The workflow file as Airflow's workers "
        + "see it (default: WORKFLOW made absolute).")
    String workflowPath;

    @Option(names = "--conn-id", paramLabel = "ID", description = "Airflow connection of the Spark master "
        + "(default: ${DEFAULT-VALUE}).")
    String connId = DagExporter.CONN_ID_DEFAULT;

    @Option(names = "--conf", paramLabel = "KEY=VALUE", description = "A Spark setting for every task's "
        + "spark-submit (repeatable).")
    Map<String, String> sparkConf = new LinkedHashMap<>();

    @Option(names = "--schedule", paramLabel = "CRON", description = "A cron expression or preset such as @daily "
        + "(default: none, triggered runs only).")
    String schedule;

    @Option(names = "--retries", paramLabel = "N", description = "Retries of each task (default: ${DEFAULT-VALUE}).")
    int retries = TaskSettings.RETRIES_DEFAULT;

    @Option(names = "--retry-delay", paramLabel = "SECONDS", description = "Delay before a retry (default: "
        + "${DEFAULT-VALUE}).")
    long retryDelaySeconds = TaskSettings.RETRY_DELAY_DEFAULT.toSeconds();

    @Option(names = "--timeout", paramLabel = "SECONDS", description = "Execution timeout of each task (default: "
        + "${DEFAULT-VALUE}; a step's own timeout_seconds, plus 10 minutes, wins).")
    long timeoutSeconds = TaskSettings.EXECUTION_TIMEOUT_DEFAULT.toSeconds();

    @Override
    public Integer call() throws IOException {
      StepKinds kinds = StepKinds.discover();
      WorkflowSpec spec = new WorkflowLoader(kinds).load(workflow);
      String id = dagId != null ? dagId : DagExporter.defaultDagId(spec.name());
      String ws = workspace != null ? workspace
          : spec.workspace().filter(w -> !w.contains("${")).orElse(Workspace.DEFAULT);
      DagExporter.Options options = new DagExporter.Options(
          id,
          workflowPath != null ? workflowPath : workflow.toAbsolutePath().normalize().toString(),
          jar != null ? jar : defaultJar(),
          Workspace.normalise(ws),
          connId,
          sparkConf,
          Optional.ofNullable(schedule),
          new TaskSettings(retries, Duration.ofSeconds(retryDelaySeconds), Duration.ofSeconds(timeoutSeconds)));
      String source = new DagExporter(kinds).export(spec, options);
      Files.createDirectories(out);
      Path file = out.resolve(id + ".py");
      // Airflow's DAG processor may read the folder at any moment: never let it see half a file.
      Path tmp = Files.createTempFile(out, "." + id, ".py.tmp");
      try {
        Files.writeString(tmp, source);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      } finally {
        Files.deleteIfExists(tmp);
      }
      System.out.println("Wrote DAG '" + id + "' (" + spec.steps().size() + " task(s)) to " + file);
      return 0;
    }

    /** The shaded jar this code runs from, else the one in the Stagecraft checkout. */
    static String defaultJar() {
      try {
        Path self = Path.of(AirflowCommands.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        if (self.getFileName().toString().endsWith("-shaded.jar")) {
          return self.toAbsolutePath().toString();
        }
        if (self.getFileName().toString().endsWith(".jar")) {
          Path shaded = self.resolveSibling(self.getFileName().toString().replace(".jar", "-shaded.jar"));
          if (Files.isRegularFile(shaded)) {
            return shaded.toAbsolutePath().toString();
          }
        }
      } catch (Exception e) {
        // fall through to the checkout's jar
      }
      String version = VersionProvider.build("version");
      String scala = VersionProvider.build("scala");
      return Path.of(Settings.home(), "jobs", "target", "scala-" + scala,
          "stagecraft-jobs_" + scala + "-" + version + "-shaded.jar").toAbsolutePath().normalize().toString();
    }
  }

  /** Where Airflow is and how to log in. */
  static class Connection {
    @Option(names = "--url", paramLabel = "URL", description = "Airflow's base URL (default: $"
        + AirflowClient.URL_ENV + ", else " + AirflowClient.URL_DEFAULT + ").")
    String url;

    @Option(names = "--credentials-file", paramLabel = "FILE", description = "A file with username=… and "
        + "password=… lines (default: $" + AirflowCredentials.PASSWORD_ENV + " and $" + AirflowCredentials.USERNAME_ENV
        + ", else $" + AirflowCredentials.FILE_ENV + "). Passwords are never taken from the command line.")
    Path credentialsFile;

    @Option(names = "--not-found-grace", paramLabel = "SECONDS", description = "How long to retry when Airflow does "
        + "not know the DAG yet (its file not parsed yet) (default: ${DEFAULT-VALUE}).")
    // A constant: picocli builds every command for --help, and AirflowClient would load Jackson (not on a plain JVM).
    long notFoundGraceSeconds = AirflowClient.NOT_FOUND_GRACE_SECONDS_DEFAULT;

    @Option(names = "--outage-grace", paramLabel = "SECONDS", description = "How long a wait polls on while Airflow "
        + "does not answer (unreachable, or server errors) before it gives up (default: ${DEFAULT-VALUE}).")
    long outageGraceSeconds = AirflowClient.OUTAGE_GRACE_SECONDS_DEFAULT;

    AirflowClient client() {
      Map<String, String> env = System.getenv();
      String base = url != null ? url : env.getOrDefault(AirflowClient.URL_ENV, AirflowClient.URL_DEFAULT);
      AirflowCredentials credentials = AirflowCredentials.resolve(env, Optional.ofNullable(credentialsFile));
      return new AirflowClient(AirflowClient.Config.of(base, credentials)
          .withNotFoundGrace(Duration.ofSeconds(notFoundGraceSeconds))
          .withOutageGrace(Duration.ofSeconds(outageGraceSeconds)));
    }

    /** A client configured only by the environment ({@code STAGECRAFT_AIRFLOW_URL}, credentials variables). */
    static AirflowClient fromEnvironment() {
      return new Connection().client();
    }
  }

  @Command(name = "trigger", mixinStandardHelpOptions = true,
      description = "Trigger a run of DAG (unpausing it first with --unpause); with --wait, wait for its end and exit "
          + "non-zero unless it succeeded.")
  public static final class Trigger implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "DAG", description = "The DAG id.")
    String dagId;

    @Option(names = "--run-id", paramLabel = "ID", description = "The run's id (default: Airflow's manual__…).")
    String runId;

    @Option(names = "--conf", paramLabel = "JSON", description = "The run's conf, a JSON object (e.g. "
        + "'{\"workspace\": \"hdfs://nn/ws\"}').")
    String conf = "{}";

    @Option(names = "--unpause", description = "Unpause the DAG first (a paused DAG's runs stay queued).")
    boolean unpause;

    @Option(names = "--wait", description = "Wait for the run to end; print progress lines.")
    boolean await;

    @Option(names = "--timeout", paramLabel = "SECONDS", description = "With --wait: give up after this long "
        + "(default: ${DEFAULT-VALUE}).")
    long timeoutSeconds = 3600;

    @CommandLine.Mixin Connection connection = new Connection();

    @Override
    public Integer call() {
      Map<String, Object> confMap = parseConf(conf);
      AirflowClient client = connection.client();
      if (unpause) {
        client.unpause(dagId);
      }
      DagRun run = client.trigger(dagId, Optional.ofNullable(runId), confMap);
      System.out.println("Triggered run " + run.runId() + " of DAG " + dagId + " (" + run.state().apiName() + ")");
      if (!await) {
        return 0;
      }
      return waitFor(client, dagId, run.runId(), timeoutSeconds, System.out);
    }
  }

  @Command(name = "wait", mixinStandardHelpOptions = true,
      description = "Wait for a DAG run to end, printing progress lines; exit 0 only if it succeeded.")
  public static final class Wait implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "DAG")
    String dagId;

    @Parameters(index = "1", paramLabel = "RUN-ID")
    String runId;

    @Option(names = "--timeout", paramLabel = "SECONDS", description = "Give up after this long (default: "
        + "${DEFAULT-VALUE}).")
    long timeoutSeconds = 3600;

    @CommandLine.Mixin Connection connection = new Connection();

    @Override
    public Integer call() {
      return waitFor(connection.client(), dagId, runId, timeoutSeconds, System.out);
    }
  }

  @Command(name = "status", mixinStandardHelpOptions = true,
      description = "Show a DAG run's state and its tasks' (or, without RUN-ID, the DAG's latest runs).")
  public static final class Status implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "DAG")
    String dagId;

    @Parameters(index = "1", arity = "0..1", paramLabel = "RUN-ID")
    String runId;

    @Option(names = "--json", description = "Print JSON.")
    boolean json;

    @CommandLine.Mixin Connection connection = new Connection();

    @Override
    public Integer call() throws IOException {
      AirflowClient client = connection.client();
      ObjectMapper mapper = new ObjectMapper();
      if (runId == null) {
        List<DagRun> runs = client.dagRuns(dagId);
        if (json) {
          System.out.println(mapper.writeValueAsString(runs.stream().map(AirflowCommands::runMap).toList()));
        } else {
          System.out.printf("%-50s %-8s %s%n", "run", "state", "started");
          for (DagRun r : runs) {
            System.out.printf("%-50s %-8s %s%n", r.runId(), r.state().apiName(), r.startDate().orElse("-"));
          }
        }
        return 0;
      }
      DagRun run = client.dagRun(dagId, runId);
      List<TaskInstance> tasks = client.taskInstances(dagId, runId);
      if (json) {
        Map<String, Object> m = runMap(run);
        m.put("tasks", tasks.stream().map(t -> Map.of("task_id", t.taskId(), "state", t.stateName(),
            "try_number", t.tryNumber())).toList());
        System.out.println(mapper.writeValueAsString(m));
      } else {
        System.out.println("dag " + dagId + "  run " + runId + "  state " + run.state().apiName());
        System.out.printf("%-30s %-16s %s%n", "task", "state", "try");
        for (TaskInstance t : tasks) {
          System.out.printf("%-30s %-16s %d%n", t.taskId(), t.stateName(), t.tryNumber());
        }
      }
      return 0;
    }
  }

  private static Map<String, Object> runMap(DagRun r) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("dag_id", r.dagId());
    m.put("dag_run_id", r.runId());
    m.put("state", r.state().apiName());
    m.put("start_date", r.startDate().orElse(null));
    m.put("end_date", r.endDate().orElse(null));
    m.put("conf", r.conf());
    return m;
  }

  static int waitFor(AirflowClient client, String dagId, String runId, long timeoutSeconds, PrintStream out) {
    DagRun end = client.await(dagId, runId, Duration.ofSeconds(timeoutSeconds), line -> {
      out.println(line);
      out.flush();
    });
    client.requireSuccess(end); // throws RUN_FAILED (exit 1) naming the failed tasks
    return 0;
  }

  static Map<String, Object> parseConf(String json) {
    try {
      Map<String, Object> m = new ObjectMapper().readValue(json, new TypeReference<LinkedHashMap<String, Object>>() {});
      return m == null ? Map.of() : m;
    } catch (IOException e) {
      throw StagecraftException.user("Invalid --conf '%s': %s (expected a JSON object, e.g. '{\"key\": \"value\"}')",
          json, StagecraftException.firstLine(e.getMessage()));
    }
  }
}
