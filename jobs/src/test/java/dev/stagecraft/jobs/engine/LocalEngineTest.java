package dev.stagecraft.jobs.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;

/** The engine on a {@code file:} workspace. */
class LocalEngineTest extends EngineScenarios {
  static final String PLACED = """
      name: placed
      steps:
        - { id: a, kind: sql, sql: "SELECT id FROM range(0, 10)" }
        - { id: b, kind: sql, sql: "SELECT id * 2 AS twice FROM a" }
        - { id: c, kind: sql, sql: "SELECT COUNT(*) AS n FROM b" }
      """;

  @Override
  String newWorkspace(String name) {
    return dir.resolve("ws-" + name).toUri().toString();
  }

  /**
   * Launches in this JVM what SparkSubmitLauncher launches as a process: the engine's {@code step} under the run's
   * lease token (its Spark application is this one; MixedPlacementIT runs the real thing on a cluster).
   */
  final class InJvmLauncher implements StepLauncher {
    final WorkflowSpec spec;
    final List<String> refusals = new CopyOnWriteArrayList<>();
    final boolean recordNothing;

    InJvmLauncher(WorkflowSpec spec, boolean recordNothing) {
      this.spec = spec;
      this.recordNothing = recordNothing;
    }

    @Override
    public Launched launch(Request request, java.util.function.Consumer<String> progress) {
      String id = request.step().id();
      try { // without the token, the run's live lease refuses the step
        engine().run(spec, options(request.runId()).withOnlyStep(id));
      } catch (RuntimeException e) {
        refusals.add(e.getMessage());
      }
      if (recordNothing) { // the application died before it reached the ledger
        return new Launched(137, "in-jvm", "nowhere", 0.1);
      }
      progress.accept("half way");
      RunLedger l = engine().run(spec, options(request.runId()).withOnlyStep(id)
          .withLaunchedBy(new Engine.LaunchedBy(request.leaseToken(), request.usageFile().toString())));
      return new Launched(l.step(id).status() == StepStatus.SUCCEEDED ? 0 : 1, "in-jvm", "the-log", 0.1);
    }
  }

  @org.junit.jupiter.api.Test
  void aStepPlacedInItsOwnApplicationRecordsItselfUnderTheRunsLeaseAndTheRunRecordsTheLaunch() throws Exception {
    WorkflowSpec spec = workflow(PLACED);
    InJvmLauncher launcher = new InJvmLauncher(spec, false);
    List<String> progress = new CopyOnWriteArrayList<>();
    Engine engine = new Engine(spark, KINDS, new EngineListener() {
      @Override
      public void stepProgress(String stepId, String status) {
        progress.add(stepId + ": " + status);
      }
    }, new Placement(Set.of("b")), Optional.of(launcher));

    RunLedger ledger = engine.run(spec, options("pl1"));

    assertThat(ledger.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(launcher.refusals).singleElement().asString()
        .startsWith("Cannot start step 'b' of run 'pl1': the whole run is live in another process");
    StepRecord b = ledger.step("b");
    assertThat(b.status()).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(b.attempts()).isEqualTo(1);
    assertThat(b.outputs().get("output").rows()).isEqualTo(10);
    // The schema travels in the ledger, so readers downstream need no inference job; it is the file's schema.
    OutputRecord out = b.outputs().get("output");
    assertThat(out.schema()).isNotBlank();
    assertThat(out.read(spark).schema()).isEqualTo(spark.read().parquet(out.uri()).schema());
    assertThat(out.read(spark).count()).isEqualTo(10);
    assertThat(b.details().get("application")).isEqualTo(Map.of("placement", "own application", "exit_code", 0,
        "spark_submit", "in-jvm", "log", "the-log", "seconds", 0.1));
    assertThat(ledger.step("c").outputs().get("output").rows()).isEqualTo(1);
    assertThat(progress).contains("b: half way");
    // The launched application's usage is part of the run's cost report, under its own executor ids.
    Workspace ws = new Workspace(workspace, spark.sparkContext().hadoopConfiguration());
    assertThat(ws.fs().exists(new org.apache.hadoop.fs.Path(ws.runDir("pl1"), "applications/b-attempt-1.usage.json")))
        .isTrue();
    JsonNode cost = Json.MAPPER.readTree(ws.fs().open(CostFiles.json(ws, "pl1")));
    assertThat(cost.path("executors").findValuesAsText("id")).contains("driver", "b-attempt-1/driver");
  }

  @org.junit.jupiter.api.Test
  void aLaunchedStepWhoseApplicationDiesBeforeRecordingFailsWithItsExitCodeAndItsDownstreamIsSkipped()
      throws Exception {
    WorkflowSpec spec = workflow(PLACED);
    Engine engine = new Engine(spark, KINDS, EngineListener.NONE, new Placement(Set.of("b")),
        Optional.of(new InJvmLauncher(spec, true)));

    RunLedger ledger = engine.run(spec, options("pl2"));

    assertThat(ledger.status()).isEqualTo(RunStatus.FAILED);
    StepRecord b = ledger.step("b");
    assertThat(b.status()).isEqualTo(StepStatus.FAILED);
    assertThat(b.attempts()).isEqualTo(1);
    assertThat(b.error()).isEqualTo("The Spark application of step 'b' exited with code 137 before it recorded a "
        + "result (its output: nowhere)");
    assertThat(ledger.step("c").status()).isEqualTo(StepStatus.SKIPPED);
    assertThatThrownBy(() -> new Engine(spark, KINDS, EngineListener.NONE, new Placement(Set.of("b")),
        Optional.empty())).hasMessageContaining("no launcher");
  }
}
