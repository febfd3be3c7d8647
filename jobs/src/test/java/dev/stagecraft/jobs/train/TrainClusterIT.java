package dev.stagecraft.jobs.train;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.engine.RunLedger;
import dev.stagecraft.jobs.engine.StepRecord;
import dev.stagecraft.jobs.engine.StepStatus;
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

  static RunLedger run(String runId, int workers) throws Exception {
    Path f = dir.resolve(runId + ".yaml");
    Files.writeString(f, """
        name: a9a-cluster
        steps:
          - { id: raw, kind: load, path: "%s/a9a.t.libsvm", format: libsvm, options: { numFeatures: "123" } }
          - id: fit
            kind: train
            input: raw
            label: label
            workers: %d
            model: { type: logistic, epochs: 2, batch_size: 512, optimizer: adam, lr: 0.02 }
        """.formatted(DATA, workers));
    StepKinds kinds = StepKinds.discover();
    WorkflowSpec spec = new WorkflowLoader(kinds).load(f);
    return new Engine(spark, kinds, EngineListener.NONE)
        .run(spec, Engine.Options.run(runId).withWorkspace(dir.resolve("ws").toString()));
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
