package dev.stagecraft.jobs.cost;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.stagecraft.jobs.engine.CostFiles;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.testing.LocalSpark;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The cost ledger of a run on local Spark: what the listener recorded, priced, written and read back. */
class CostLedgerTest {
  @TempDir Path dir;

  @Test
  void runCostEqualsRecordedLifetimesTimesPrices() throws Exception {
    SparkSession spark = LocalSpark.get();
    Files.writeString(dir.resolve("nums.csv"), "n\n1\n2\n3\n4\n5\n6\n");
    Path wf = dir.resolve("wf.yaml");
    Files.writeString(wf, """
        name: costs
        steps:
          - { id: nums, kind: load, path: nums.csv, options: { header: true, inferSchema: true }, policy: cpu-etl }
          - id: squares
            kind: sql
            policy: gpu-inference
            sql: SELECT n, n * n AS sq FROM nums
        """);
    WorkflowSpec spec = new WorkflowLoader(StepKinds.discover()).load(wf);
    String ws = dir.resolve("ws").toUri().toString();
    RunLedger ledger = new Engine(spark, StepKinds.discover(), new EngineListener() {})
        .run(spec, Engine.Options.run("cost-1").withWorkspace(ws));
    assertThat(ledger.status()).isEqualTo(RunStatus.SUCCEEDED);
    // Local mode: no profile of its own, but the policy's pool and the policy are on record.
    assertThat(ledger.step("squares").details().get("resources"))
        .isEqualTo(Map.of("policy", "gpu-inference", "pool", "inference", "resource_profile", "default",
            "application_id", spark.sparkContext().applicationId()));

    Workspace workspace = new Workspace(ws, spark.sparkContext().hadoopConfiguration());
    CostReport report = CostFiles.read(workspace, "cost-1").orElseThrow();
    assertThat(workspace.fs().getFileStatus(CostFiles.png(workspace, "cost-1")).getLen()).isGreaterThan(1000);

    // One executor in local mode (the driver), priced as the local policy's on-demand shape; no driver item besides
    // it, or the driver would be billed twice.
    assertThat(report.executors()).hasSize(1);
    assertThat(report.drivers()).isEmpty();
    assertThat(report.total().driverCost()).isZero();
    CostReport.ExecutorCost driver = report.executors().get(0);
    assertThat(driver.id()).isEqualTo("driver");
    assertThat(driver.cores()).isEqualTo(spark.sparkContext().defaultParallelism());
    assertThat(driver.memoryMib()).isEqualTo(1024);
    assertThat(driver.market()).isEqualTo("on_demand");
    double price = PriceCatalog.builtIn().hourly(driver.cores(), driver.memoryMib(), 0, Optional.empty(),
        Market.ON_DEMAND);
    assertThat(driver.pricePerHour()).isCloseTo(price, within(1e-12));
    assertThat(report.total().cost()).isCloseTo(driver.seconds() * price / 3600, within(1e-12));
    assertThat(report.total().busySeconds() + report.total().idleSeconds())
        .isCloseTo(driver.seconds(), within(1e-6));
    double steps = report.steps().values().stream().mapToDouble(CostReport.Line::cost).sum();
    assertThat(steps).isCloseTo(report.total().cost(), within(1e-12));
    // Every step's tasks were recorded against it.
    assertThat(report.steps().get("nums").taskSeconds()).isPositive();
    assertThat(report.steps().get("squares").taskSeconds()).isPositive();
    assertThat(report.total().busyCost()).isPositive();
  }
}
