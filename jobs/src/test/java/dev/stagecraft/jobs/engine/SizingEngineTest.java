package dev.stagecraft.jobs.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.testing.LocalSpark;
import dev.stagecraft.testing.LogCapture;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code sizing: auto} and deadlines through the engine on local Spark: history from the workspace, the ledger. */
class SizingEngineTest {
  @TempDir Path dir;
  final SparkSession spark = LocalSpark.get();

  @Test
  void firstRunFallsBackWithAReasonAndTheSecondSizesFromTheFirst() throws Exception {
    Files.writeString(dir.resolve("nums.csv"), "n\n1\n2\n3\n4\n5\n6\n");
    Path wf = dir.resolve("wf.yaml");
    Files.writeString(wf, """
        name: sized
        sizing: auto
        deadline: 10m
        steps:
          - { id: nums, kind: load, path: nums.csv, options: { header: true, inferSchema: true }, policy: cpu-etl }
          - id: sq
            kind: sql
            policy: cpu-etl
            deadline: 5m
            sql: SELECT n, n * n AS sq FROM nums
          - { id: plain, kind: sql, sizing: as_written, policy: cpu-etl, sql: SELECT COUNT(*) AS c FROM sq }
        """);
    WorkflowSpec spec = new WorkflowLoader(StepKinds.discover()).load(wf);
    String ws = dir.resolve("ws").toUri().toString();
    Engine engine = new Engine(spark, StepKinds.discover(), new EngineListener() {});

    RunLedger first;
    try (LogCapture log = new LogCapture(StepSizing.class)) {
      first = engine.run(spec, Engine.Options.run("s1").withWorkspace(ws));
      assertThat(log.lines()).anyMatch(l -> l.contains("Sizing of step 'sq' (policy as written): no earlier "
          + "succeeded run of workflow 'sized' with step 'sq' and a cost report in " + ws));
    }
    assertThat(first.status()).isEqualTo(RunStatus.SUCCEEDED);
    Map<?, ?> sizing = (Map<?, ?>) first.step("sq").details().get("sizing");
    assertThat(sizing.get("mode")).isEqualTo("policy as written");
    assertThat(sizing.get("policy")).isEqualTo("cpu-etl");
    assertThat((String) sizing.get("reason")).startsWith("no earlier succeeded run of workflow 'sized'");
    Map<?, ?> deadline = (Map<?, ?>) first.step("sq").details().get("deadline");
    assertThat(((Number) deadline.get("deadline_seconds")).doubleValue()).isBetween(1.0, 300.0);
    assertThat(deadline.get("met")).isEqualTo(true);
    assertThat(first.step("plain").details()).doesNotContainKey("sizing");

    RunLedger second = engine.run(spec, Engine.Options.run("s2").withWorkspace(ws));
    assertThat(second.status()).isEqualTo(RunStatus.SUCCEEDED);
    Map<?, ?> auto = (Map<?, ?>) second.step("sq").details().get("sizing");
    assertThat(auto.get("mode")).isEqualTo("auto");
    Map<?, ?> numbers = (Map<?, ?>) auto.get("numbers");
    assertThat(numbers.get("history_run")).isEqualTo("s1");
    assertThat(((Number) numbers.get("history_seconds")).doubleValue())
        .isEqualTo(Math.round(first.step("sq").seconds() * 1000) / 1000.0);
    assertThat((int) auto.get("executors")).isBetween(1, 4);
    // the same 6 input rows (what 'nums' wrote) as last time: the time is not scaled
    assertThat(numbers.get("history_input_rows")).isEqualTo(6.0);
    assertThat(numbers.get("input_scale")).isEqualTo(1.0);
    // an idempotent SQL step with a 5-minute deadline a second-long step easily absorbs: spot
    assertThat(auto.get("market")).isEqualTo("spot");
    assertThat((String) auto.get("reason")).contains("spot: expected");
    // the same step's numbers are what the cost report of s1 said
    Workspace w = new Workspace(ws, spark.sparkContext().hadoopConfiguration());
    var line = CostFiles.read(w, "s1").orElseThrow().steps().get("sq");
    assertThat(((Number) numbers.get("history_idle_executor_seconds")).doubleValue())
        .isEqualTo(Math.round(line.idleSeconds() * 1000) / 1000.0);
  }
}
