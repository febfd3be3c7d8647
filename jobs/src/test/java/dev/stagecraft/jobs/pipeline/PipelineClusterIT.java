package dev.stagecraft.jobs.pipeline;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.train.TrainedModel;
import dev.stagecraft.testing.StandaloneCluster;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.spark.sql.SparkSession;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pipelined training on a real standalone cluster: two workers (their own JVMs) with two cores and two fake GPUs
 * each, so four executors of one core and one GPU, {@code spark.task.resource.gpu.amount=1}.
 */
class PipelineClusterIT {
  static final Path DATA = Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/data");
  @TempDir static Path dir;
  static StandaloneCluster cluster;
  static SparkSession spark;

  @BeforeAll
  static void start() throws Exception {
    cluster = StandaloneCluster.start(dir, 2, 2, 2);
    spark = cluster.session("pipeline-cluster-it", 1, true).getOrCreate();
    StandaloneCluster.awaitExecutors(spark, 4, Duration.ofSeconds(180));
  }

  @AfterAll
  static void stop() {
    if (spark != null) {
      spark.stop();
    }
    if (cluster != null) {
      cluster.close();
    }
  }

  /** a9a's test split trained by {@code fit} (the train step's fields after input and label), then scored. */
  static RunLedger run(String runId, String fit) throws Exception {
    Path f = dir.resolve(runId + ".yaml");
    Files.writeString(f, """
        name: a9a-pipeline-cluster
        steps:
          - { id: raw, kind: load, path: "%s/a9a.t.libsvm", format: libsvm, options: { numFeatures: "123" } }
          - id: fit
            kind: train
            input: raw
            label: label
        %s
          - id: rows
            kind: sql
            sql: SELECT monotonically_increasing_id() AS row_id, vector_to_array(features) AS features FROM raw
          - { id: score, kind: infer, model: "${steps.fit.model}", input: rows, id_columns: [row_id] }
        """.formatted(DATA, fit.indent(4).stripTrailing()));
    StepKinds kinds = StepKinds.discover();
    return new Engine(spark, kinds, EngineListener.NONE).run(new WorkflowLoader(kinds).load(f),
        Engine.Options.run(runId).withWorkspace(dir.resolve("ws").toString()));
  }

  @Test
  void twoReplicasOfATwoStagePipelineRunOnFourDistinctGpusAndInferScoresTheirModel() throws Exception {
    RunLedger ledger = run("p1", """
        workers: 4
        model: { type: mlp, hidden: [32, 16], epochs: 2, batch_size: 256, optimizer: adam, lr: 0.005, seed: 3 }
        parallelism: { pipeline: 2, micro_batches: 4 }
        """);
    StepRecord fit = ledger.step("fit");
    assertThat(fit.status()).as(String.valueOf(fit.error())).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(fit.metrics().get("train_accuracy")).isGreaterThan(0.8);
    @SuppressWarnings("unchecked")
    Map<String, Object> pipeline = (Map<String, Object>) fit.details().get("pipeline");
    assertThat(pipeline).containsEntry("stages", 2).containsEntry("replicas", 2).containsEntry("schedule", "1f1b")
        .containsEntry("bubble_theoretical", 0.2);
    @SuppressWarnings("unchecked")
    List<Map<String, Object>> ranks = (List<Map<String, Object>>) pipeline.get("per_rank");
    assertThat(ranks).extracting(r -> r.get("stage")).containsExactly(0, 1, 0, 1);
    assertThat(ranks).extracting(r -> r.get("replica")).containsExactly(0, 0, 1, 1);
    assertThat(ranks).extracting(r -> r.get("gpu")).as("every task bound a GPU of its own")
        .containsExactlyInAnyOrder("0", "1", "2", "3");
    assertThat(ranks).allSatisfy(r -> assertThat(((Number) r.get("bytes_sent")).longValue()).isPositive());
    assertThat(((Number) pipeline.get("bubble_measured")).doubleValue()).isBetween(0.0, 1.0);

    StepRecord score = ledger.step("score");
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(score.metrics().get("rows")).isEqualTo(16281.0);
  }

  static CompletableFuture<RunLedger> startCheckpointed(String runId) {
    return CompletableFuture.supplyAsync(() -> {
      try {
        return run(runId, """
            workers: 2
            model: { type: mlp, hidden: [64, 32], epochs: 4, batch_size: 128, optimizer: adam, lr: 0.002, seed: 5 }
            parallelism: { pipeline: 2, micro_batches: 4, schedule: gpipe }
            checkpoint: { every_steps: 60, keep: 2 }
            """);
      } catch (Exception e) {
        throw new CompletionException(e);
      }
    });
  }

  /** The newest step with a complete checkpoint (manifest written) of a run's fit step, or -1. */
  static long newestCheckpoint(String runId) throws java.io.IOException {
    return TrainedModel.newestCheckpoint(dir.resolve("ws/checkpoints/" + runId + "/fit"));
  }

  /** How long each executor's log is now: what they log afterwards belongs to a step started later. */
  static Map<Path, Integer> logLengths() throws Exception {
    Map<Path, Integer> lengths = new java.util.HashMap<>();
    try (Stream<Path> logs = Files.walk(dir)) {
      for (Path log : logs.filter(p -> p.getFileName().toString().equals("stderr")).toList()) {
        lengths.put(log, Files.readString(log).length());
      }
    }
    return lengths;
  }

  /**
   * The executor whose log says it runs stage {@code stage} of the running step: in what it logged after {@code
   * before} (an earlier test's step on the same executors logged the same words).
   */
  static ProcessHandle executorOfStage(int stage, Map<Path, Integer> before) throws Exception {
    String mark = ": stage " + stage + " (layers";
    try (Stream<Path> logs = Files.walk(dir)) {
      for (Path log : logs.filter(p -> p.getFileName().toString().equals("stderr")).toList()) {
        if (Files.readString(log).indexOf(mark, before.getOrDefault(log, 0)) >= 0) {
          String executorId = log.getParent().getFileName().toString();
          return cluster.executors().stream()
              .filter(p -> commandLine(p).contains("--executor-id " + executorId + " ")).findFirst().orElseThrow();
        }
      }
    }
    throw new AssertionError("no executor logged " + mark);
  }

  private static String commandLine(ProcessHandle p) {
    try {
      return Files.readString(Path.of("/proc/" + p.pid() + "/cmdline")).replace('\0', ' ');
    } catch (java.io.IOException e) {
      return "";
    }
  }


  @Test
  void theExecutorOfStageOneKilledCostsAtMostTheStepsSinceTheLastCheckpointOfAllStages() throws Exception {
    Map<Path, Integer> before = logLengths();
    CompletableFuture<RunLedger> running = startCheckpointed("k1");
    Awaitility.await().atMost(Duration.ofSeconds(300)).pollInterval(Duration.ofMillis(20))
        .until(() -> newestCheckpoint("k1") > 0 || running.isDone());
    long savedAtKill = newestCheckpoint("k1");
    assertThat(savedAtKill).as("training was still running when the first checkpoint appeared").isPositive();
    assertThat(executorOfStage(1, before).destroyForcibly()).isTrue(); // SIGKILL
    RunLedger ledger = running.get(300, TimeUnit.SECONDS);

    StepRecord fit = ledger.step("fit");
    assertThat(fit.status()).as(String.valueOf(fit.error())).isEqualTo(StepStatus.SUCCEEDED);
    @SuppressWarnings("unchecked")
    List<Map<String, Object>> attempts = (List<Map<String, Object>>) fit.details().get("training_attempts");
    assertThat(attempts).hasSize(2);
    assertThat(attempts.get(0)).containsKey("error");
    long resumedFrom = ((Number) attempts.get(1).get("resumed_from_step")).longValue();
    assertThat(resumedFrom).as("resumed from the newest checkpoint there was at the kill, or a newer one")
        .isGreaterThanOrEqualTo(savedAtKill);
    assertThat(fit.metrics().get("resumed_from_step")).isEqualTo((double) resumedFrom);

    // The same training, never interrupted, ends with the same model: every stage resumed at one step.
    RunLedger clean = startCheckpointed("k2").get(300, TimeUnit.SECONDS);
    StepRecord cleanFit = clean.step("fit");
    assertThat(cleanFit.status()).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(cleanFit.metrics().get("resumed_from_step")).isZero();
    float[] a = TrainedModel.weights(fit);
    float[] b = TrainedModel.weights(cleanFit);
    assertThat(a).hasSameSizeAs(b);
    for (int i = 0; i < a.length; i++) {
      assertThat(a[i]).as("parameter %d", i).isCloseTo(b[i], org.assertj.core.data.Offset.offset(1e-4f));
    }
    assertThat(fit.metrics().get("final_loss")).isCloseTo(cleanFit.metrics().get("final_loss"),
        org.assertj.core.data.Offset.offset(1e-5));
  }
}
