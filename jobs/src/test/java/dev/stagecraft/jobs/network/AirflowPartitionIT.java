package dev.stagecraft.jobs.network;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.testing.AirflowServer;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.jobs.testing.Proc;
import dev.stagecraft.jobs.testing.PythonEnvs;
import dev.stagecraft.testing.HostNetwork;
import dev.stagecraft.testing.HostNetwork.Host;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.awaitility.Awaitility;
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
 * An {@code airflow} step waiting for its DAG run while the driver's host is cut off from Airflow's (a silent
 * partition: packets vanish, nobody gets a reset). A real Airflow 3 runs in host {@code airflow}, bound to its address;
 * each driver is a {@code stagecraft run} (local Spark) in host {@code driver}. A partition shorter than the step's
 * outage grace is ridden out; a longer one fails the step soon after the grace with one line naming Airflow's URL and
 * how long it was unreachable.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class AirflowPartitionIT {
  /** The step's {@code outage_grace_seconds}: short, so the long partition costs half a minute, not two. */
  static final int GRACE_S = 30;
  /** The short partition: under half the grace, so a poll lost to it can be abandoned and retried in time. */
  static final int SHORT_PARTITION_S = 12;
  /** How long the DAG's task sleeps: it is still running when the short partition has healed. */
  static final int NAP_S = 45;
  static final String DAG = "nap";

  // Kept when a test fails: Airflow's logs (airflow/*.log) and the drivers' (RUN.out, RUN.err).
  @TempDir(cleanup = CleanupMode.ON_SUCCESS)
  static Path dir;
  static HostNetwork net;
  static AirflowServer airflow;

  @BeforeAll
  static void startAirflowInItsHost() throws Exception {
    Optional<Path> venv = PythonEnvs.airflowVenv();
    Assumptions.assumeTrue(venv.isPresent(), PythonEnvs.MISSING_AIRFLOW);
    System.err.println("AirflowPartitionIT: logs in " + dir);
    net = HostNetwork.create("airflow", "driver");
    // Written before Airflow starts, so its DAG processor parses it on its first pass.
    Path dags = Files.createDirectories(dir.resolve("airflow/dags"));
    Files.writeString(dags.resolve(DAG + ".py"), """
        import datetime
        from airflow.providers.standard.operators.bash import BashOperator
        from airflow.sdk import DAG

        with DAG(dag_id="%s", schedule=None, catchup=False,
                 start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)):
            BashOperator(task_id="sleep", bash_command="sleep %d")
        """.formatted(DAG, NAP_S));
    // Tokens outlive the class: a renewal is not what these tests are about.
    airflow = AirflowServer.startIn(net, net.host("airflow"), venv.get(), null, dir.resolve("airflow"),
        Duration.ofHours(1));
  }

  @AfterAll
  static void stop() {
    if (airflow != null) {
      airflow.close();
    }
    if (net != null) {
      net.close();
    }
  }

  @Test
  @Order(1)
  void aShortPartitionIsRiddenOutAndTheLedgerSaysSo() throws Exception {
    Driver run = Driver.start("short");
    run.awaitTaskRunning();
    Host driver = net.host("driver");
    Instant cut = Instant.now();
    net.partition(driver);
    try {
      Thread.sleep(SHORT_PARTITION_S * 1000L);
    } finally {
      net.heal(driver);
    }
    assertThat(run.awaitExit(Duration.ofMinutes(4))).as(run.output()).isZero();
    JsonNode step = run.ledger().at("/steps/handoff");
    assertThat(step.path("status").asText()).isEqualTo("SUCCEEDED");
    JsonNode outages = step.at("/details/airflow_outages");
    System.err.println("short: outages " + outages);
    // The partition's outage first; on this busy machine a later poll may also go unanswered for a poll timeout (seen
    // once, about 10 s after the heal), which the wait must ride out as well.
    assertThat(outages).as("the outages the wait rode out").isNotEmpty()
        .allSatisfy(o -> assertThat(o.path("ridden_out").asBoolean()).isTrue());
    JsonNode outage = outages.get(0);
    assertThat(Duration.between(cut, Instant.parse(outage.path("since").asText())))
        .as("the first outage began with the poll the cut caught")
        .isBetween(Duration.ofSeconds(-10), Duration.ofSeconds(3));
    assertThat(outage.path("seconds").asDouble()).as("unanswered for about the partition")
        .isBetween(SHORT_PARTITION_S - 6.0, (double) GRACE_S);
    assertThat(outage.path("last_error").asText()).contains(airflow.url());
    assertThat(run.out()).as("the progress in the log").contains("; Airflow at " + airflow.url() + " answered again after ");
    run.assertNoSecrets();
  }

  @Test
  @Order(2)
  void aLongPartitionFailsTheStepSoonAfterTheGraceWithOneClearLine() throws Exception {
    Driver run = Driver.start("long");
    run.awaitTaskRunning();
    Host driver = net.host("driver");
    Instant cut = Instant.now();
    net.partition(driver);
    int code;
    try {
      code = run.awaitExit(Duration.ofSeconds(GRACE_S + 90));
    } finally {
      net.heal(driver);
    }
    assertThat(code).as("a failed run\n" + run.output()).isEqualTo(1);
    JsonNode step = run.ledger().at("/steps/handoff");
    assertThat(step.path("status").asText()).isEqualTo("FAILED");
    assertThat(step.path("error_category").asText()).isEqualTo("EXTERNAL");
    String error = step.path("error").asText();
    System.err.println("long: " + error);
    assertThat(error).startsWith("Cannot wait for run 'stagecraft__long__handoff' of DAG '" + DAG + "': Airflow at "
        + airflow.url() + " has been unreachable for ")
        .contains("(longer than the " + GRACE_S + "s a wait rides out); last error: ")
        .doesNotContain("\n");
    int down = Integer.parseInt(error.replaceAll(".* has been unreachable for (\\d+)s .*", "$1"));
    assertThat(down).as("seconds unreachable, as the error says").isBetween(GRACE_S, GRACE_S + 5);
    // Bounded: the step ended soon after the grace, not a TCP timeout (minutes) later.
    Duration failedAfter = Duration.between(cut, Instant.parse(step.path("ended").asText()));
    assertThat(failedAfter).as("from the cut to the step's end")
        .isBetween(Duration.ofSeconds(GRACE_S - 3), Duration.ofSeconds(GRACE_S + 12));
    assertThat(step.at("/details/airflow_outages/0/ridden_out").asBoolean(true)).isFalse();
    assertThat(run.err().lines().filter(l -> l.startsWith("stagecraft: ")).toList()).as(run.err())
        .singleElement().asString().contains(error);
    run.assertNoSecrets();
  }

  /** A workflow whose one step triggers the DAG and waits for it, riding out outages up to {@link #GRACE_S}. */
  static Path workflow() throws IOException {
    Path f = dir.resolve("handoff.yaml");
    Files.writeString(f, """
        name: handoff
        steps:
          - id: handoff
            kind: airflow
            action: trigger
            dag: %s
            wait: true
            timeout_seconds: 600
            outage_grace_seconds: %d
        """.formatted(DAG, GRACE_S));
    return f;
  }

  /** A {@code stagecraft run} of {@link #workflow} in host {@code driver}, local Spark, output in RUN.out/RUN.err. */
  record Driver(String runId, Process process, Path outFile, Path errFile) {
    static Driver start(String runId) throws IOException {
      List<String> cmd = new ArrayList<>();
      cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
      for (String flag : System.getProperty("stagecraft.jvm.flags", "").trim().split("\\s+")) {
        if (!flag.isEmpty()) {
          cmd.add(flag);
        }
      }
      cmd.addAll(List.of("-Xmx512m", "-Dspark.master=local[1]", "-Dspark.ui.enabled=false", "-cp",
          System.getProperty("stagecraft.shaded.jar") + File.pathSeparator
              + Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim(),
          "dev.stagecraft.jobs.Main", "run", workflow().toString(), "--run-id", runId, "--workspace",
          workspace().toString()));
      Path out = dir.resolve(runId + ".out");
      Path err = dir.resolve(runId + ".err");
      ProcessBuilder pb = new ProcessBuilder(net.command(net.host("driver"), cmd)).directory(dir.toFile())
          .redirectOutput(out.toFile()).redirectError(err.toFile());
      pb.environment().put("STAGECRAFT_PROGRESS", "plain");
      pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
      pb.environment().put("STAGECRAFT_AIRFLOW_URL", airflow.url());
      pb.environment().put("STAGECRAFT_AIRFLOW_USERNAME", airflow.user());
      pb.environment().put("STAGECRAFT_AIRFLOW_PASSWORD", airflow.password());
      return new Driver(runId, pb.start(), out, err);
    }

    /** Until the step's progress says the DAG's task runs (a plain progress line comes at least every 10 s). */
    void awaitTaskRunning() {
      Awaitility.await().atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(250))
          .until(() -> out().contains("1 running (sleep)") || !process.isAlive());
      assertThat(process.isAlive()).as("the run is waiting for the task\n" + output()).isTrue();
    }

    int awaitExit(Duration timeout) throws InterruptedException {
      if (!process.waitFor(timeout.toSeconds(), TimeUnit.SECONDS)) {
        Proc.kill(process);
        throw new AssertionError("The run " + runId + " did not end within " + timeout + ":\n" + output());
      }
      return process.exitValue();
    }

    JsonNode ledger() throws IOException {
      return Ledgers.newest(workspace(), runId);
    }

    String out() throws IOException {
      return Files.readString(outFile);
    }

    String err() throws IOException {
      return Proc.withoutJvmNotices(Files.readString(errFile));
    }

    String output() {
      try {
        return out() + err();
      } catch (IOException e) {
        return "(cannot read the output: " + e + ")";
      }
    }

    /** Neither the output nor the ledger shows Airflow's password. */
    void assertNoSecrets() throws IOException {
      assertThat(output()).doesNotContain(airflow.password());
      assertThat(Files.readString(Ledgers.newestFile(workspace(), runId))).doesNotContain(airflow.password());
    }
  }

  static Path workspace() {
    return dir.resolve("ws");
  }
}
