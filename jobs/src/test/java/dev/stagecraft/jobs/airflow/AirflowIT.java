package dev.stagecraft.jobs.airflow;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.jobs.airflow.AirflowException.Reason;
import dev.stagecraft.jobs.testing.AirflowServer;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.jobs.testing.Proc;
import dev.stagecraft.jobs.testing.PythonEnvs;
import java.io.File;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.CleanupMode;
import org.junit.jupiter.api.io.TempDir;

/**
 * Stagecraft and a real Airflow 3 (installed by bin/airflow-env; one server for the whole class): exported DAGs pass
 * Airflow's import check; the REST client's errors against the real server; the example workflow's DAG (load, SQL,
 * barrier training, batch inference: seven tasks, each spark-submitting its step on local[2]) runs through and leaves
 * a ledger of succeeded steps under Airflow's run id, then a DAG scheduled on one of its assets runs; a failing step
 * fails its task with the step's one-line reason and `stagecraft airflow trigger --wait` exits non-zero.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class AirflowIT {
  static final String JAR = System.getProperty("stagecraft.shaded.jar");
  static final ObjectMapper JSON = new ObjectMapper();
  static final String OK_DAG = "stagecraft_a9a";
  static final String BAD_DAG = "stagecraft_broken";
  static final String CONSUMER_DAG = "a9a_summary_consumer";
  static final String ASSET = "stagecraft://a9a/summary/output";
  static final List<String> EXAMPLE_STEPS =
      List.of("train_raw", "test_raw", "features", "summary", "fit", "test_set", "score");

  // Kept when a test fails: Airflow's logs (api-server.log, scheduler.log, logs/…) are under airflow/.
  @TempDir(cleanup = CleanupMode.ON_SUCCESS) static Path dir;
  static AirflowServer airflow;
  static AirflowClient client;
  static Path workspace;

  @BeforeAll
  static void startAirflowAndExportDags() throws Exception {
    Optional<Path> venv = PythonEnvs.airflowVenv();
    Optional<Path> spark = PythonEnvs.sparkHome();
    Assumptions.assumeTrue(venv.isPresent(), PythonEnvs.MISSING_AIRFLOW);
    Assumptions.assumeTrue(spark.isPresent(), PythonEnvs.MISSING_SPARK);
    // Tokens live 40 s, so the waits below outlive several and the client must renew them.
    airflow = AirflowServer.start(venv.get(), spark.get(), dir.resolve("airflow"), Duration.ofSeconds(40));
    client = new AirflowClient(AirflowClient.Config.of(airflow.url(),
        new AirflowCredentials(airflow.user(), airflow.password())).withNotFoundGrace(Duration.ofSeconds(90))
        .withPoll(Duration.ofSeconds(1)));

    workspace = dir.resolve("ws");
    Path flows = Files.createDirectories(dir.resolve("flows"));
    Files.writeString(flows.resolve("people.csv"), "id,name,age\n1,ann,31\n2,bob,45\n3,cy,27\n");
    Files.writeString(flows.resolve("broken.yaml"), """
        name: broken
        steps:
          - { id: people, kind: load, path: people.csv, options: { header: true, inferSchema: true } }
          - { id: bad, kind: sql, sql: "SELECT no_such_column FROM people" }
        """);
    Path example = Path.of(System.getProperty("stagecraft.home", ".."), "jobs", "examples", "a9a", "workflow.yaml")
        .toAbsolutePath().normalize();
    for (Path wf : List.of(example, flows.resolve("broken.yaml"))) {
      Proc.Result r = stagecraft(Map.of(), "airflow", "export-dag", wf.toString(),
          "--out", airflow.dagsFolder().toString(), "--workspace", workspace.toString(), "--retries", "0",
          "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2");
      assertThat(r.code()).as(r.err()).isZero();
      if (wf.equals(example)) {
        assertThat(r.out()).contains("Wrote DAG 'stagecraft_a9a' (7 task(s)) to ");
      }
    }
    Files.writeString(airflow.dagsFolder().resolve("consumer.py"), """
        import datetime
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import DAG, Asset

        with DAG(dag_id="%s", schedule=[Asset("%s")], catchup=False,
                 start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)):
            EmptyOperator(task_id="report")
        """.formatted(CONSUMER_DAG, ASSET));
  }

  @AfterAll
  static void stopAirflow() {
    if (airflow != null) {
      airflow.close();
    }
  }

  /** Runs the shaded jar's CLI as bin/stagecraft does (Spark on the classpath), pointed at this Airflow. */
  static Proc.Result stagecraft(Map<String, String> extraEnv, String... args) throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(List.of(System.getProperty("stagecraft.jvm.flags").trim().split("\\s+")));
    cmd.add("-Xmx1g");
    cmd.add("-Dspark.master=local[2]");
    cmd.add("-Dspark.ui.enabled=false");
    cmd.add("-cp");
    cmd.add(JAR + File.pathSeparator
        + Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim());
    cmd.add("dev.stagecraft.jobs.Main");
    cmd.addAll(List.of(args));
    Map<String, String> env = new LinkedHashMap<>();
    if (airflow != null) {
      env.put("STAGECRAFT_AIRFLOW_URL", airflow.url());
      env.put("STAGECRAFT_AIRFLOW_USERNAME", airflow.user());
      env.put("STAGECRAFT_AIRFLOW_PASSWORD", airflow.password());
    }
    env.putAll(extraEnv);
    return Proc.run(cmd, env, dir.resolve("cli"), Duration.ofMinutes(8));
  }

  @Test
  @Order(1)
  void exportedDagsPassAirflowsImportCheck() throws Exception {
    for (String dag : List.of(OK_DAG, BAD_DAG, CONSUMER_DAG)) {
      assertThat(client.isPaused(dag)).as(dag + " is parsed and not paused").isFalse();
    }
    Proc.Result errors = airflow.cli(Duration.ofMinutes(2), "dags", "list-import-errors", "-o", "json");
    assertThat(errors.code()).as(errors.err()).isZero();
    // stdout may start with warnings (e.g. "[warning  ] Could not import graphviz"): the JSON is the last line.
    String json = errors.out().strip().lines().reduce((a, b) -> b).orElse("");
    assertThat(JSON.readTree(json))
        .as("import errors: %s", errors.out()).isEmpty();
  }

  @Test
  @Order(2)
  void clientErrorsAreTypedAndNeverShowThePassword() throws Exception {
    String wrong = "wrong-" + airflow.password();
    AirflowClient bad = new AirflowClient(AirflowClient.Config.of(airflow.url(),
        new AirflowCredentials(airflow.user(), wrong)));
    assertThatThrownBy(() -> bad.dagRun(OK_DAG, "x"))
        .isInstanceOfSatisfying(AirflowException.class, e -> {
          assertThat(e.reason()).isEqualTo(Reason.UNAUTHORIZED);
          assertThat(e.status()).hasValue(401);
        })
        .hasMessage("Cannot log in to Airflow at " + airflow.url() + " as 'stagecraft': wrong username or password "
            + "(HTTP 401)");

    AirflowClient impatient = new AirflowClient(client.config().withNotFoundGrace(Duration.ofSeconds(2)));
    assertThatThrownBy(() -> impatient.trigger("no_such_dag", Optional.empty(), Map.of()))
        .isInstanceOfSatisfying(AirflowException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NOT_FOUND))
        .hasMessageStartingWith("Cannot trigger DAG 'no_such_dag': not found (HTTP 404: ")
        .hasMessageContaining("still after 2s");
    assertThatThrownBy(() -> client.dagRun(OK_DAG, "no-such-run"))
        .isInstanceOfSatisfying(AirflowException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NOT_FOUND));

    int closed = Proc.freePort();
    AirflowClient nowhere = new AirflowClient(AirflowClient.Config.of("http://127.0.0.1:" + closed,
        new AirflowCredentials("u", "p")));
    assertThatThrownBy(() -> nowhere.unpause(OK_DAG))
        .isInstanceOfSatisfying(AirflowException.class, e -> {
          assertThat(e.reason()).isEqualTo(Reason.UNREACHABLE);
          assertThat(e.category()).isEqualTo(dev.stagecraft.spi.ErrorCategory.EXTERNAL);
        })
        .hasMessageStartingWith("Cannot log in to Airflow at http://127.0.0.1:" + closed + " as 'u': Airflow at "
            + "http://127.0.0.1:" + closed + " is unreachable");

    // The CLI: bad credentials exit 2 with one line naming neither password.
    Proc.Result cli = stagecraft(Map.of("STAGECRAFT_AIRFLOW_PASSWORD", wrong), "airflow", "status", OK_DAG);
    assertThat(cli.code()).isEqualTo(2);
    assertThat(cli.err().strip()).isEqualTo("stagecraft: Cannot log in to Airflow at " + airflow.url()
        + " as 'stagecraft': wrong username or password (HTTP 401)");
    assertThat(cli.out() + cli.err()).doesNotContain(wrong).doesNotContain(airflow.password());
    Proc.Result noCreds = stagecraft(Map.of("STAGECRAFT_AIRFLOW_PASSWORD", ""), "airflow", "status", OK_DAG);
    assertThat(noCreds.code()).isEqualTo(2);
    assertThat(noCreds.err()).startsWith("stagecraft: Cannot log in to Airflow: no credentials");
    Path file = dir.resolve("airflow.properties");
    Files.writeString(file, "username=" + airflow.user() + "\npassword=" + airflow.password() + "\n");
    Proc.Result fromFile = stagecraft(Map.of("STAGECRAFT_AIRFLOW_PASSWORD", ""), "airflow", "status", OK_DAG,
        "--credentials-file", file.toString());
    assertThat(fromFile.code()).as(fromFile.err()).isZero();
    assertThat(fromFile.out()).startsWith("run ");
  }

  @Test
  @Order(3)
  void airflowRunsTheExportedDagThroughSparkSubmitAndTheLedgerShowsEveryStepSucceeded() throws Exception {
    // The failing workflow runs at the same time, through the CLI (trigger --wait) in its own process.
    Path cliDir = Files.createDirectories(dir.resolve("cli-bad"));
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", JAR + File.pathSeparator
            + Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim(),
        "dev.stagecraft.jobs.Main", "airflow", "trigger", BAD_DAG, "--run-id", "e2e-bad", "--wait",
        "--timeout", "480"));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(cliDir.resolve("out.txt").toFile())
        .redirectError(cliDir.resolve("err.txt").toFile());
    pb.environment().putAll(Map.of("STAGECRAFT_AIRFLOW_URL", airflow.url(), "STAGECRAFT_AIRFLOW_USERNAME",
        airflow.user(), "STAGECRAFT_AIRFLOW_PASSWORD", airflow.password()));
    Process failing = pb.start();
    try {
      int tokensBefore = client.tokensIssued();
      DagRun triggered = client.trigger(OK_DAG, Optional.of("e2e-ok"), Map.of("note", "from AirflowIT"));
      assertThat(triggered.runId()).isEqualTo("e2e-ok");
      assertThat(triggered.conf()).containsEntry("note", "from AirflowIT");

      List<String> progress = new CopyOnWriteArrayList<>();
      DagRun done = client.await(OK_DAG, "e2e-ok", Duration.ofMinutes(12), progress::add);
      assertThat(done.state()).as("progress: %s\n%s", progress, unsuccessfulTaskLogs(OK_DAG, "e2e-ok"))
          .isEqualTo(DagRunState.SUCCESS);
      assertThat(progress).first().asString().startsWith("dag stagecraft_a9a run e2e-ok: ");
      assertThat(progress).last().asString().startsWith("dag stagecraft_a9a run e2e-ok: success — 7 success");
      assertThat(client.taskInstances(OK_DAG, "e2e-ok")).extracting(TaskInstance::taskId, TaskInstance::stateName)
          .containsExactlyInAnyOrderElementsOf(EXAMPLE_STEPS.stream()
              .map(t -> org.assertj.core.groups.Tuple.tuple(t, "success")).toList());
      assertThat(client.tokensIssued()).as("tokens were renewed during the wait").isGreaterThan(tokensBefore + 1);
      assertThatThrownBy(() -> client.trigger(OK_DAG, Optional.of("e2e-ok"), Map.of()))
          .isInstanceOfSatisfying(AirflowException.class, e -> assertThat(e.reason()).isEqualTo(Reason.CONFLICT))
          .hasMessageStartingWith("Cannot trigger DAG 'stagecraft_a9a' as run 'e2e-ok': conflict (HTTP 409");

      // One Stagecraft run under Airflow's run id: every step succeeded and its outputs exist.
      JsonNode ledger = Ledgers.newest(workspace, "e2e-ok");
      assertThat(ledger.path("run_id").asText()).isEqualTo("e2e-ok");
      for (String step : EXAMPLE_STEPS) {
        JsonNode s = ledger.path("steps").path(step);
        assertThat(s.path("status").asText()).as(step).isEqualTo("SUCCEEDED");
        assertThat(s.path("outputs").size()).as(step + " outputs").isPositive();
        s.path("outputs").forEach(o ->
            assertThat(Path.of(URI.create(o.path("uri").asText()))).as(step + " output").exists());
      }
      assertThat(ledger.path("steps").path("fit").path("metrics").path("validation_accuracy").asDouble())
          .isGreaterThanOrEqualTo(0.84);
      assertThat(ledger.path("steps").path("score").path("metrics").path("scored_rows").asLong()).isEqualTo(16281);
      assertThat(airflow.taskLog(OK_DAG, "e2e-ok", "score")).contains("Step score of run e2e-ok SUCCEEDED");

      // The asset the `summary` task updated schedules the consumer DAG.
      await().atMost(90, TimeUnit.SECONDS).pollInterval(Duration.ofSeconds(1)).untilAsserted(() ->
          assertThat(client.dagRuns(CONSUMER_DAG)).extracting(DagRun::state).contains(DagRunState.SUCCESS));
      int consumerRuns = client.dagRuns(CONSUMER_DAG).size();
      long event = client.createAssetEvent(ASSET, Map.of("source", "AirflowIT"));
      assertThat(event).isPositive();
      await().atMost(90, TimeUnit.SECONDS).pollInterval(Duration.ofSeconds(1)).untilAsserted(() ->
          assertThat(client.dagRuns(CONSUMER_DAG)).hasSizeGreaterThan(consumerRuns));

      // The failing run: the task failed with the step's one-line reason; the CLI exited non-zero.
      assertThat(failing.waitFor(8, TimeUnit.MINUTES)).as("trigger --wait ended").isTrue();
      String out = Files.readString(cliDir.resolve("out.txt"));
      String err = Proc.withoutJvmNotices(Files.readString(cliDir.resolve("err.txt")));
      assertThat(failing.exitValue()).as(out + err).isEqualTo(1);
      assertThat(out).startsWith("Triggered run e2e-bad of DAG stagecraft_broken")
          .contains("dag stagecraft_broken run e2e-bad: failed");
      assertThat(err.strip()).isEqualTo("stagecraft: Run 'e2e-bad' of DAG 'stagecraft_broken' failed: bad failed "
          + "(see the task logs in Airflow)");
      assertThat(airflow.taskLog(BAD_DAG, "e2e-bad", "bad"))
          .contains("stagecraft: step 'bad' failed: ").contains("no_such_column");
      JsonNode badLedger = Ledgers.newest(workspace, "e2e-bad");
      assertThat(badLedger.path("steps").path("bad").path("status").asText()).isEqualTo("FAILED");
    } finally {
      if (failing.isAlive()) {
        Proc.kill(failing);
      }
    }
  }

  @Test
  @Order(4)
  void aWorkflowOutsideAirflowRecordsAssetEventsAndHandsOffToADagWithAnAirflowStep() throws Exception {
    Path flows = dir.resolve("flows");
    // Named like the exported workflow, so `summary`'s output is the same asset.
    Files.writeString(flows.resolve("handoff.yaml"), """
        name: a9a
        steps:
          - { id: summary, kind: sql, sql: "SELECT 'test' AS split, 1 AS rows" }
          - id: notify
            kind: airflow
            after: [summary]
            action: trigger
            dag: %s
            conf: { table: "${steps.summary.output}" }
            wait: true
            timeout_seconds: 300
        """.formatted(CONSUMER_DAG));
    int assetEventsBefore = client.dagRuns(CONSUMER_DAG).size();
    Proc.Result r = stagecraft(Map.of(), "run", flows.resolve("handoff.yaml").toString(), "--run-id",
        "handoff-1", "--workspace", workspace.toString(), "--airflow-asset-events");
    assertThat(r.code()).as(r.out() + r.err()).isZero();
    assertThat(r.err()).doesNotContain("warning").doesNotContain(airflow.password());
    assertThat(r.out()).contains("✔ notify succeeded");

    DagRun handedOff = client.dagRun(CONSUMER_DAG, "stagecraft__handoff-1__notify");
    assertThat(handedOff.state()).isEqualTo(DagRunState.SUCCESS);
    assertThat(handedOff.conf().get("table").toString()).startsWith("file:").contains("/runs/handoff-1/steps/summary/");
    // Besides our trigger, the asset event of `summary`'s committed output scheduled the consumer once more.
    await().atMost(90, TimeUnit.SECONDS).pollInterval(Duration.ofSeconds(1)).untilAsserted(() ->
        assertThat(client.dagRuns(CONSUMER_DAG)).hasSizeGreaterThanOrEqualTo(assetEventsBefore + 2));
  }

  /** The logs of a run's tasks that did not succeed, for a failure message. */
  static String unsuccessfulTaskLogs(String dag, String runId) {
    StringBuilder out = new StringBuilder();
    try {
      for (TaskInstance t : client.taskInstances(dag, runId)) {
        if (!t.stateName().equals("success")) {
          out.append("--- ").append(t.taskId()).append(" (").append(t.stateName()).append(") ---\n")
              .append(airflow.taskLog(dag, runId, t.taskId())).append('\n');
        }
      }
    } catch (Exception e) {
      out.append("(cannot read the task logs: ").append(e).append(')');
    }
    return out.toString();
  }
}
