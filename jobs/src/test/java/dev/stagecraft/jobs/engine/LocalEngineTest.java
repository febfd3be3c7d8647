package dev.stagecraft.jobs.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.ledger.Json;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;

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
    final List<Optional<ResourcePolicy>> policies = new CopyOnWriteArrayList<>();
    final boolean recordNothing;

    InJvmLauncher(WorkflowSpec spec, boolean recordNothing) {
      this.spec = spec;
      this.recordNothing = recordNothing;
    }

    @Override
    public Launched launch(Request request, Consumer<String> progress) {
      String id = request.step().id();
      policies.add(request.policy());
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
          .withLaunchedBy(new Engine.LaunchedBy(request.parentLease(), request.usageFile().toString(),
              request.preparedFile().toString())));
      return new Launched(l.step(id).status() == StepStatus.SUCCEEDED ? 0 : 1, "in-jvm", "the-log", 0.1);
    }
  }

  @Test
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
    assertThat(OutputTables.read(spark, out).schema()).isEqualTo(spark.read().parquet(out.uri()).schema());
    assertThat(OutputTables.read(spark, out).count()).isEqualTo(10);
    assertThat(b.details().get("application")).isEqualTo(Map.of("placement", "own application", "exit_code", 0,
        "spark_submit", "in-jvm", "log", "the-log", "seconds", 0.1));
    assertThat(ledger.step("c").outputs().get("output").rows()).isEqualTo(1);
    assertThat(progress).contains("b: half way");
    // The launched application's usage is part of the run's cost report, under its own executor ids.
    Workspace ws = new Workspace(workspace, spark.sparkContext().hadoopConfiguration());
    assertThat(ws.fs().exists(new Path(ws.runDir("pl1"), "applications/b-attempt-1.usage.json")))
        .isTrue();
    JsonNode cost = Json.MAPPER.readTree(ws.fs().open(CostFiles.json(ws, "pl1")));
    assertThat(cost.path("executors").findValuesAsText("id")).contains("driver", "b-attempt-1/driver");
  }

  @Test
  void aLaunchedTrainStepGetsItsStatisticsAndStagedShardsFromTheWorkflowsApplicationAndTrainsTheSameModel()
      throws Exception {
    String yaml = """
        name: placed-train
        steps:
          - id: data
            kind: sql
            sql: >
              SELECT CAST(id % 2 AS DOUBLE) AS label, CAST(id % 7 AS DOUBLE) + (id % 2) * 3 AS x,
                     CAST(id % 5 AS DOUBLE) AS y FROM range(0, 400)
          - id: fit
            kind: train
            input: data
            validation: data
            label: label
            workers: 2
            model: { type: logistic, epochs: 2, batch_size: 32, lr: 0.1, seed: 3 }
        """;
    WorkflowSpec spec = workflow(yaml);
    RunLedger inProcess = engine().run(spec, options("tr1"));
    RunLedger placed = new Engine(spark, KINDS, EngineListener.NONE, new Placement(Set.of("fit")),
        Optional.of(new InJvmLauncher(spec, false))).run(spec, options("tr2"));

    assertThat(placed.status()).isEqualTo(RunStatus.SUCCEEDED);
    StepRecord fit = placed.step("fit");
    assertThat(fit.details()).containsEntry("statistics", "prepared in the workflow's application")
        .containsEntry("input", "staged in the workflow's application, one shard per worker");
    assertThat(inProcess.step("fit").details()).doesNotContainKey("statistics").doesNotContainKey("input");
    Workspace ws = new Workspace(workspace, spark.sparkContext().hadoopConfiguration());
    JsonNode prepared = Json.MAPPER.readTree(ws.fs().open(new Path(ws.runDir("tr2"),
        "applications/fit-attempt-1.prepared.json")));
    assertThat(prepared.path("stats").path("rows").asLong()).isEqualTo(400);
    assertThat(prepared.path("stats").path("mean").size()).isEqualTo(2);
    // One shard per worker, as the barrier stage's repartition splits the rows; the validation set split the same way.
    JsonNode shards = prepared.path("shards");
    assertThat(shards.path("workers").asInt()).isEqualTo(2);
    assertThat(shards.path("train_rows").size()).isEqualTo(2);
    assertThat(shards.path("train_rows").get(0).asInt() + shards.path("train_rows").get(1).asInt()).isEqualTo(400);
    assertThat(shards.path("validation_rows").get(0).asInt() + shards.path("validation_rows").get(1).asInt())
        .isEqualTo(400);
    // They were the attempt's intermediate data: gone once the attempt ended.
    assertThat(shards.path("dir").asText()).contains("/runs/tr2/steps/fit/scratch-1");
    assertThat(ws.fs().exists(new Path(shards.path("dir").asText()))).isFalse();
    // The same statistics, data, split and seed: the same parameters, so the same metrics — the validation metrics
    // computed by the workers on their shards as by the evaluation job on the input.
    for (String m : List.of("train_loss", "train_accuracy", "train_auc", "validation_loss", "validation_accuracy",
        "validation_auc")) {
      assertThat(fit.metrics().get(m)).as(m).isCloseTo(inProcess.step("fit").metrics().get(m),
          org.assertj.core.api.Assertions.within(1e-6));
    }
  }

  @Test
  void aLaunchedStepIsRightSizedBeforeItsApplicationStarts() throws Exception {
    WorkflowSpec spec = workflow("""
        name: placed-sized
        sizing: auto
        policies:
          trainer:
            executor: { cores: 1, memory: 1g, gpus: 1, gpu_type: t4 }
            task: { cpus: 1, gpus: 1 }
            allocation: { mode: static, executors: 1 }
        steps:
          - { id: data, kind: sql, sql: "SELECT CAST(id % 2 AS DOUBLE) AS label, CAST(id % 7 AS DOUBLE) AS x FROM range(0, 200)" }
          - id: fit
            kind: train
            policy: trainer
            input: data
            label: label
            model: { type: logistic, epochs: 2, batch_size: 32 }
            checkpoint: { every_steps: 5 }
        """);
    InJvmLauncher launcher = new InJvmLauncher(spec, false);
    Engine engine = new Engine(spark, KINDS, EngineListener.NONE, new Placement(Set.of("fit")),
        Optional.of(launcher));

    assertThat(engine.run(spec, options("sz1")).status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(engine.run(spec, options("sz2")).status()).isEqualTo(RunStatus.SUCCEEDED);

    // No history: the policy as written. Then sized from the first run: a checkpointing step may go to spot.
    assertThat(launcher.policies).hasSize(2);
    assertThat(launcher.policies.get(0)).get().extracting(ResourcePolicy::name)
        .isEqualTo("trainer");
    ResourcePolicy sized = launcher.policies.get(1).orElseThrow();
    assertThat(sized.name()).isEqualTo("trainer@auto:fit");
    assertThat(sized.market()).isEqualTo(ResourcePolicy.Market.SPOT);
  }

  @Test
  void badInputFoundWhilePreparingFailsTheStepAsItsOwnErrorAndLaunchesNothing() throws Exception {
    WorkflowSpec spec = workflow("""
        name: placed-bad
        steps:
          - { id: data, kind: sql, sql: "SELECT IF(id = 3, CAST('NaN' AS DOUBLE), 1.0) AS label, id AS x FROM range(0, 9)" }
          - { id: fit, kind: train, input: data, label: label, model: { type: logistic } }
        """);
    InJvmLauncher launcher = new InJvmLauncher(spec, false);

    RunLedger ledger = new Engine(spark, KINDS, EngineListener.NONE, new Placement(Set.of("fit")),
        Optional.of(launcher)).run(spec, options("tr3"));

    StepRecord fit = ledger.step("fit");
    assertThat(fit.status()).isEqualTo(StepStatus.FAILED);
    assertThat(fit.error()).contains("step 'fit' field 'label': column 'label' is null, NaN or infinite in 1 of 9 rows")
        .doesNotContain("as its own Spark application");
    assertThat(fit.errorCategory()).isEqualTo("USER");
    assertThat(launcher.refusals).isEmpty(); // nothing was launched
  }

  @Test
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
