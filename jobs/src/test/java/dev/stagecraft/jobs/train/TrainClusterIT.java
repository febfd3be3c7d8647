package dev.stagecraft.jobs.train;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.testing.StandaloneCluster;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The train step on a real standalone cluster: a master and two workers (their own JVMs), each worker with one core
 * and one fake GPU, and {@code spark.task.resource.gpu.amount=1}.
 */
class TrainClusterIT {
  static final Path DATA = Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/data");
  @TempDir static Path dir;
  static StandaloneCluster cluster;
  static SparkSession spark;

  @BeforeAll
  static void start() throws Exception {
    cluster = StandaloneCluster.start(dir, 2, 1, 1);
    spark = cluster.session("train-cluster-it", 1, true).getOrCreate();
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

  /** Loads a9a's test split and trains on it: {@code fit} is the train step's fields after input and label. */
  static RunLedger run(String runId, String fit) throws Exception {
    Path f = dir.resolve(runId + ".yaml");
    Files.writeString(f, """
        name: a9a-cluster
        steps:
          - { id: raw, kind: load, path: "%s/a9a.t.libsvm", format: libsvm, options: { numFeatures: "123" } }
          - id: fit
            kind: train
            input: raw
            label: label
        """.formatted(DATA) + fit.indent(4));
    StepKinds kinds = StepKinds.discover();
    WorkflowSpec spec = new WorkflowLoader(kinds).load(f);
    return new Engine(spark, kinds, EngineListener.NONE)
        .run(spec, Engine.Options.run(runId).withWorkspace(dir.resolve("ws").toString()));
  }

  static RunLedger run(String runId, int workers) throws Exception {
    return run(runId, "workers: " + workers + "\n"
        + "model: { type: logistic, epochs: 2, batch_size: 512, optimizer: adam, lr: 0.02 }\n");
  }

  @Test
  void eachBarrierTaskTrainsOnTheGpuSparkAssignedIt() throws Exception {
    RunLedger ledger = run("c1", 2);
    StepRecord fit = ledger.step("fit");
    assertThat(fit.status()).as(String.valueOf(fit.error())).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(fit.metrics().get("train_accuracy")).isGreaterThan(0.8);
    org.apache.hadoop.fs.Path bundle = new org.apache.hadoop.fs.Path(fit.outputs().get("model").uri());
    @SuppressWarnings("unchecked")
    List<Map<String, Object>> placement = (List<Map<String, Object>>) ModelBundle
        .open(bundle.getFileSystem(new Configuration()), bundle).manifest().training().get("placement");
    assertThat(placement).extracting(p -> p.get("gpu")).containsExactlyInAnyOrder("0", "1");
    assertThat(placement).extracting(p -> p.get("device")).allMatch(d -> d.toString().startsWith("cpu"));
  }

  /** A run of an MLP with a checkpoint every 100 steps, started in the background. */
  static java.util.concurrent.CompletableFuture<RunLedger> startCheckpointed(String runId) {
    return java.util.concurrent.CompletableFuture.supplyAsync(() -> {
      try {
        return run(runId, """
            workers: 2
            model: { type: mlp, hidden: [64], epochs: 12, batch_size: 128, optimizer: adam, lr: 0.002, seed: 5 }
            checkpoint: { every_steps: 100, keep: 2 }
            """);
      } catch (Exception e) {
        throw new java.util.concurrent.CompletionException(e);
      }
    });
  }

  /** The newest step with a complete checkpoint (manifest written) of a run's step, or -1. */
  static long newestCheckpoint(String runId) throws java.io.IOException {
    return TrainedModel.newestCheckpoint(dir.resolve("ws/checkpoints/" + runId + "/fit"));
  }


  @Test
  void aKilledExecutorCostsAtMostTheStepsSinceTheLastCheckpoint() throws Exception {
    var running = startCheckpointed("k1");
    org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(300))
        .pollInterval(java.time.Duration.ofMillis(20)).until(() -> newestCheckpoint("k1") > 0 || running.isDone());
    long savedAtKill = newestCheckpoint("k1");
    assertThat(savedAtKill).as("training was still running when the first checkpoint appeared").isPositive();
    List<ProcessHandle> executors = cluster.executors();
    assertThat(executors).hasSize(2);
    assertThat(executors.get(0).destroyForcibly()).isTrue(); // SIGKILL
    RunLedger ledger = running.get(300, java.util.concurrent.TimeUnit.SECONDS);

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
    assertThat(fit.metrics().get("train_accuracy")).isGreaterThan(0.8);

    // The same training, never interrupted, ends with the same model.
    RunLedger clean = startCheckpointed("k2").get(300, java.util.concurrent.TimeUnit.SECONDS);
    StepRecord cleanFit = clean.step("fit");
    assertThat(cleanFit.status()).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(cleanFit.metrics().get("resumed_from_step")).isZero();
    float[] a = TrainedModel.weights(fit);
    float[] b = TrainedModel.weights(cleanFit);
    assertThat(a).hasSameSizeAs(b);
    for (int i = 0; i < a.length; i++) {
      assertThat(a[i]).as("parameter %d", i).isCloseTo(b[i], org.assertj.core.data.Offset.offset(1e-4f));
    }
  }

  @Test
  void moreWorkersThanSlotsFailsFastAndSaysWhy() throws Exception {
    RunLedger ledger = run("c2", 3);
    StepRecord fit = ledger.step("fit");
    assertThat(fit.status()).isEqualTo(StepStatus.FAILED);
    assertThat(fit.errorCategory()).isEqualTo("RESOURCE");
    assertThat(fit.error()).isEqualTo("Cannot start train step 'fit': it needs 3 barrier tasks at once (workers: 3) "
        + "but the cluster offers 2 task slots (spark.task.cpus=1, spark.task.resource.gpu.amount=1, master "
        + cluster.masterUrl() + "); lower 'workers' or add executors");
  }
}
