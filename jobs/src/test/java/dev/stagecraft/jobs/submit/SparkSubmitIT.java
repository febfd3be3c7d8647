package dev.stagecraft.jobs.submit;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.jobs.bench.DistributionCluster;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.jobs.testing.Proc;
import dev.stagecraft.jobs.testing.PythonEnvs;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The shaded jar under a real Spark 3.5.5 distribution's {@code spark-submit} (pip's pyspark, installed by
 * bin/spark-dist): a whole run on local[2], single steps of a run, a failure's exit code and one-line reason, and a
 * run on a standalone master + worker started with the distribution's {@code bin/spark-class}.
 */
class SparkSubmitIT {
  static final String JAR = System.getProperty("stagecraft.shaded.jar");
  static final ObjectMapper JSON = new ObjectMapper();

  static Path sparkHome;

  @TempDir static Path dir;

  @BeforeAll
  static void distribution() throws IOException {
    sparkHome = PythonEnvs.sparkHome().orElse(null);
    Assumptions.assumeTrue(sparkHome != null, PythonEnvs.MISSING_SPARK);
    Files.writeString(dir.resolve("people.csv"), "id,name,age\n1,ann,31\n2,bob,45\n3,cy,27\n");
    Files.writeString(dir.resolve("wf.yaml"), """
        name: people
        steps:
          - { id: people, kind: load, path: people.csv, options: { header: true, inferSchema: true } }
          - { id: older, kind: sql, sql: "SELECT name FROM people WHERE age > 30" }
        """);
    Files.writeString(dir.resolve("broken.yaml"), """
        name: broken
        steps:
          - { id: people, kind: load, path: people.csv, options: { header: true, inferSchema: true } }
          - { id: bad, kind: sql, sql: "SELECT no_such_column FROM people" }
        """);
  }

  static Proc.Result submit(String master, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(sparkHome.resolve("bin/spark-submit").toString(),
        "--master", master, "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
        "--class", "dev.stagecraft.jobs.Main", JAR));
    cmd.addAll(List.of(args));
    return Proc.run(cmd, Map.of("SPARK_HOME", sparkHome.toString(), "SPARK_LOCAL_IP", "127.0.0.1",
        "STAGECRAFT_PROGRESS", "plain"), dir, Duration.ofMinutes(4));
  }

  static JsonNode ledger(Path workspace, String runId) throws IOException {
    return Ledgers.newest(workspace, runId);
  }

  @Test
  void runsAWholeWorkflowOnLocal2AndFailsWithOneLineAndNonZeroExit() throws Exception {
    Path ws = dir.resolve("ws-local");
    Proc.Result ok = submit("local[2]", "run", "wf.yaml", "--run-id", "sub1", "--workspace", ws.toString());
    assertThat(ok.code()).as(ok.err()).isZero();
    assertThat(ok.out()).contains("Run sub1 SUCCEEDED").contains("✔ older succeeded");
    assertThat(ledger(ws, "sub1").path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(ledger(ws, "sub1").path("steps").path("older").path("status").asText()).isEqualTo("SUCCEEDED");

    Proc.Result failed = submit("local[2]", "run", "broken.yaml", "--run-id", "sub2", "--workspace", ws.toString());
    assertThat(failed.code()).isEqualTo(1);
    assertThat(failed.stagecraftErrLines()).singleElement().asString()
        .startsWith("stagecraft: step 'bad' failed: ")
        .contains("no_such_column")
        .endsWith("Resume with: stagecraft run broken.yaml --run-id sub2 --resume");
    assertThat(failed.err()).as("no stack trace without --verbose").doesNotContain("\tat ");
    assertThat(ledger(ws, "sub2").path("steps").path("people").path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(ledger(ws, "sub2").path("steps").path("bad").path("status").asText()).isEqualTo("FAILED");
  }

  @Test
  void runsOneStepOfARunAtATime() throws Exception {
    Path ws = dir.resolve("ws-steps");
    Proc.Result early = submit("local[2]", "step", "wf.yaml", "older", "--run-id", "st1", "--workspace",
        ws.toString());
    assertThat(early.code()).as("an unmet upstream step is the user's error").isEqualTo(2);
    assertThat(early.stagecraftErrLines()).containsExactly("stagecraft: Cannot run step 'older' of run 'st1': "
        + "upstream step 'people' is PENDING (expected SUCCEEDED; run it first)");

    Proc.Result first = submit("local[2]", "step", "wf.yaml", "people", "--run-id", "st1", "--workspace",
        ws.toString());
    assertThat(first.code()).as(first.err()).isZero();
    assertThat(ledger(ws, "st1").path("steps").path("people").path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(ledger(ws, "st1").path("steps").path("older").path("status").asText()).isEqualTo("PENDING");

    Proc.Result second = submit("local[2]", "step", "wf.yaml", "older", "--run-id", "st1", "--workspace",
        ws.toString());
    assertThat(second.code()).as(second.err()).isZero();
    assertThat(second.out()).contains("Step older of run st1 SUCCEEDED");
    JsonNode older = ledger(ws, "st1").path("steps").path("older");
    assertThat(older.path("status").asText()).isEqualTo("SUCCEEDED");
    String output = older.path("outputs").path("output").path("uri").asText();
    assertThat(Path.of(URI.create(output))).isDirectory();
  }

  @Test
  void runsOnAStandaloneMasterAndWorkerStartedWithSparkClass() throws Exception {
    Path clusterDir = Files.createDirectories(dir.resolve("cluster"));
    try (DistributionCluster cluster = DistributionCluster.start(sparkHome, clusterDir, 1, 2, "2g", 0)) {
      Path ws = dir.resolve("ws-standalone");
      Proc.Result ok = submit(cluster.masterUrl(), "run", "wf.yaml", "--run-id", "cl1", "--workspace",
          ws.toString());
      assertThat(ok.code()).as(ok.err()).isZero();
      assertThat(ok.out()).contains("Run cl1 SUCCEEDED");
      assertThat(ledger(ws, "cl1").path("status").asText()).isEqualTo("SUCCEEDED");
      // The work ran on the cluster: the worker launched an executor for the application.
      try (var apps = Files.list(clusterDir.resolve("worker-0"))) {
        assertThat(apps.map(p -> p.getFileName().toString())).anyMatch(n -> n.startsWith("app-"));
      }
    }
  }
}
