package dev.stagecraft.jobs.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.jobs.testing.Proc;
import dev.stagecraft.jobs.testing.PythonEnvs;
import dev.stagecraft.testing.StandaloneCluster;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.CleanupMode;
import org.junit.jupiter.api.io.TempDir;

/**
 * A workflow that mixes dynamic allocation (SQL under {@code cpu-etl}) with a barrier training step under a static
 * policy, spark-submitted to a standalone cluster (master + 2 workers with one fake GPU each): the training step runs
 * as its own Spark application, launched through Spark's launcher with its policy's static executors, under the same
 * run, ledger and workspace; the ledger records the launch (exit code, log) and the run's cost report includes the
 * launched application's executors.
 */
class MixedPlacementIT {
  static final String JAR = System.getProperty("stagecraft.shaded.jar");
  static final ObjectMapper JSON = new ObjectMapper();

  @TempDir(cleanup = CleanupMode.ON_SUCCESS) static Path dir;
  static StandaloneCluster cluster;
  static Path sparkHome;

  @BeforeAll
  static void start() throws Exception {
    sparkHome = PythonEnvs.sparkHome().orElse(null);
    Assumptions.assumeTrue(sparkHome != null, PythonEnvs.MISSING_SPARK);
    cluster = StandaloneCluster.start(dir, 2, 2, 1);
  }

  @AfterAll
  static void stop() {
    if (cluster != null) {
      cluster.close();
    }
  }

  @Test
  void theStaticTrainingStepRunsAsItsOwnApplicationUnderTheSameRun() throws Exception {
    Files.writeString(dir.resolve("mixed.yaml"), """
        name: mixed
        policies:
          cpu-etl:
            executor: { cores: 1, memory: 512m, memory_overhead: 384m }
            allocation: { mode: dynamic, min: 0, max: 1, initial: 1, idle_timeout: 5s }
          gpu-training:
            executor: { cores: 1, memory: 512m, memory_overhead: 384m, gpus: 1, gpu_type: t4 }
            task: { cpus: 1, gpus: 1 }
            allocation: { mode: static, executors: 2 }
        steps:
          - id: data
            kind: sql
            policy: cpu-etl
            sql: |
              SELECT CAST(id %% 2 AS INT) AS label, CAST(id %% 2 AS DOUBLE) * 2 + CAST(id %% 7 AS DOUBLE) / 7 AS x1,
                     CAST(id %% 5 AS DOUBLE) AS x2
              FROM range(0, 4000, 1, 2)
          - id: fit
            kind: train
            policy: gpu-training
            input: data
            label: label
            features: [x1, x2]
            workers: 2
            name: mixed_model
            model: { type: logistic, epochs: 2, batch_size: 128, optimizer: adam, lr: 0.05 }
          - { id: rows, kind: sql, policy: cpu-etl, after: [fit], sql: "SELECT COUNT(*) AS n FROM data" }
        """.replace("%%", "%"));
    Path ws = dir.resolve("ws");
    String flags = System.getProperty("stagecraft.jvm.flags", "").trim();
    List<String> cmd = new ArrayList<>(List.of(sparkHome.resolve("bin/spark-submit").toString(),
        "--master", cluster.masterUrl(), "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.sql.shuffle.partitions=2",
        "--conf", "spark.executor.extraJavaOptions=" + flags,
        // The cluster's Spark home holds Spark's own jars only (StandaloneCluster); a distribution has the rest.
        "--conf", "spark.executor.extraClassPath=" + StandaloneCluster.testClassPath(),
        "--conf", "spark.scheduler.barrier.maxConcurrentTasksCheck.interval=1s",
        "--conf", "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures=30",
        "--class", "dev.stagecraft.jobs.Main", JAR, "run", "mixed.yaml", "--run-id", "mix1", "--workspace",
        ws.toString()));
    Proc.Result r = Proc.run(cmd, Map.of("SPARK_HOME", sparkHome.toString(), "SPARK_LOCAL_IP", "127.0.0.1",
        "STAGECRAFT_PROGRESS", "plain"), dir, Duration.ofMinutes(6));
    assertThat(r.code()).as(r.out() + r.err()).isZero();
    assertThat(r.out()).contains("▶ fit (train) started").contains("✔ fit succeeded").contains("Run mix1 SUCCEEDED");

    JsonNode ledger = Ledgers.newest(ws, "mix1");
    JsonNode fit = ledger.path("steps").path("fit");
    assertThat(fit.path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(fit.path("attempts").asInt()).isEqualTo(1);
    // Launched: its exit status and where its output is kept.
    // Its statistics pass ran in the workflow's application (prepare), not on the training application's GPUs, and
    // so did the split into one shard per worker: the GPU executors read their shard and run no shuffle.
    assertThat(fit.path("details").path("statistics").asText()).isEqualTo("prepared in the workflow's application");
    assertThat(fit.path("details").path("input").asText())
        .isEqualTo("staged in the workflow's application, one shard per worker");
    JsonNode app = fit.path("details").path("application");
    assertThat(app.path("placement").asText()).isEqualTo("own application");
    assertThat(app.path("exit_code").asInt()).isZero();
    assertThat(app.path("spark_submit").asText()).isEqualTo(sparkHome + "/bin/spark-submit");
    Path log = Path.of(java.net.URI.create(app.path("log").asText()));
    assertThat(Files.readString(log)).contains("Step fit of run mix1 SUCCEEDED");
    // Another application than the SQL steps', sized by gpu-training (its own default profile, static).
    String fitApp = fit.path("details").path("resources").path("application_id").asText();
    String dataApp = ledger.path("steps").path("data").path("details").path("resources").path("application_id")
        .asText();
    assertThat(fitApp).startsWith("app-").isNotEqualTo(dataApp);
    assertThat(ledger.path("steps").path("rows").path("details").path("resources").path("application_id").asText())
        .isEqualTo(dataApp);
    // Each barrier task got its own GPU of the launched application's executors.
    org.apache.hadoop.fs.Path bundle = new org.apache.hadoop.fs.Path(fit.path("outputs").path("model").path("uri")
        .asText());
    @SuppressWarnings("unchecked")
    List<Map<String, Object>> placement = (List<Map<String, Object>>) ModelBundle
        .open(bundle.getFileSystem(new Configuration()), bundle).manifest().training().get("placement");
    assertThat(placement).extracting(p -> p.get("gpu")).containsExactlyInAnyOrder("0", "1");

    // One cost report for the run: the launched application's executors (prefixed with its step and attempt)
    // next to the run's own, and the total is their sum.
    JsonNode cost = JSON.readTree(ws.resolve("runs/mix1/cost.json").toFile());
    List<JsonNode> launched = new ArrayList<>();
    double sum = 0;
    for (JsonNode e : cost.path("executors")) {
      sum += e.path("cost").asDouble();
      if (e.path("id").asText().startsWith("fit-attempt-1/")) {
        launched.add(e);
      }
    }
    assertThat(launched).filteredOn(e -> e.path("gpus").asInt() == 1).hasSize(2);
    // Both applications' drivers are billed, on demand, and counted in the total.
    List<String> drivers = new ArrayList<>();
    for (JsonNode d : cost.path("drivers")) {
      sum += d.path("cost").asDouble();
      drivers.add(d.path("id").asText());
      assertThat(d.path("market").asText()).isEqualTo("on_demand");
      assertThat(d.path("cost").asDouble()).isPositive();
    }
    assertThat(drivers).hasSize(2).contains("fit-attempt-1/driver");
    assertThat(cost.path("total").path("cost").asDouble()).isCloseTo(sum, within(1e-9));
    assertThat(cost.path("steps").path("fit").path("gpu_utilisation").asDouble()).isPositive();
  }
}
