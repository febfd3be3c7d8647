package dev.stagecraft.jobs.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.stagecraft.inference.bundle.BundleManifest;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.testing.LocalSpark;
import dev.stagecraft.testing.LogCapture;
import dev.stagecraft.training.spark.TrainStep;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.ml.classification.LogisticRegression;
import org.apache.spark.ml.classification.LogisticRegressionModel;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The {@code train} step through the engine on local[2]: a9a with 2 barrier workers, against MLlib. */
class TrainWorkflowTest {
  static final Path DATA = Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/data");

  @TempDir Path dir;
  final SparkSession spark = LocalSpark.get();
  final List<String> progress = new CopyOnWriteArrayList<>();

  RunLedger run(String yaml, String runId) throws Exception {
    return run(yaml, runId, false);
  }

  RunLedger run(String yaml, String runId, boolean resume) throws Exception {
    Path f = dir.resolve("wf.yaml");
    Files.writeString(f, yaml);
    StepKinds kinds = StepKinds.discover();
    WorkflowSpec spec = new WorkflowLoader(kinds).load(f);
    return new Engine(spark, kinds, new EngineListener() {
      @Override
      public void stepProgress(String stepId, String status) {
        progress.add(status);
      }
    }).run(spec, (resume ? Engine.Options.run(runId).withResume() : Engine.Options.run(runId))
        .withWorkspace(dir.resolve("ws").toString()));
  }

  static String a9a(String trainStep) {
    return """
        name: a9a
        params: { data: %s }
        steps:
          - { id: train_raw, kind: load, path: "${data}/a9a.libsvm", format: libsvm, options: { numFeatures: "123" } }
          - { id: test_raw, kind: load, path: "${data}/a9a.t.libsvm", format: libsvm, options: { numFeatures: "123" } }
        """.formatted(DATA) + trainStep;
  }

  @Test
  void thePolicysCollectivesIntegrityReachesTheRing() throws Exception {
    try (LogCapture log = new LogCapture(TrainStep.class)) {
      RunLedger ledger = run("""
          name: a9a
          params: { data: %s }
          policies:
            trusted: { collectives: { integrity: none } }
          steps:
            - { id: train_raw, kind: load, path: "${data}/a9a.libsvm", format: libsvm, options: { numFeatures: "123" } }
            - id: fit
              kind: train
              policy: trusted
              input: train_raw
              label: label
              workers: 2
              model: { type: logistic, epochs: 1, batch_size: 1024, optimizer: adam, lr: 0.01, seed: 3 }
          """.formatted(DATA), "t-integrity");
      assertThat(ledger.step("fit").status()).as(String.valueOf(ledger.step("fit").error()))
          .isEqualTo(StepStatus.SUCCEEDED);
      assertThat(log.lines()).contains("INFO Step 'fit': the ring's frames are not protected (collectives.integrity: "
          + "none): for trusted networks only");
    }
  }

  @Test
  void logisticOnA9aWithTwoWorkersMatchesMllibAndWritesABundle() throws Exception {
    RunLedger ledger = run(a9a("""
          - id: fit
            kind: train
            input: train_raw
            validation: test_raw
            label: label
            workers: 2
            model: { type: logistic, epochs: 5, batch_size: 256, optimizer: adam, lr: 0.01, seed: 3 }
        """), "t1");

    StepRecord fit = ledger.step("fit");
    assertThat(fit.status()).as(String.valueOf(fit.error())).isEqualTo(StepStatus.SUCCEEDED);
    double accuracy = fit.metrics().get("validation_accuracy");
    assertThat(accuracy).isGreaterThanOrEqualTo(0.845);
    assertThat(fit.metrics()).containsKeys("train_loss", "train_auc", "validation_auc", "samples_per_second");
    assertThat(progress).anyMatch(p -> p.matches("epoch \\d/5, step \\d+/\\d+, loss \\d\\.\\d{4}, .* samples/s, ETA .*"));

    // The peer: Spark MLlib's logistic regression on the same data, in the same run.
    Dataset<Row> train = spark.read().format("libsvm").option("numFeatures", "123").load(DATA + "/a9a.libsvm");
    Dataset<Row> test = spark.read().format("libsvm").option("numFeatures", "123").load(DATA + "/a9a.t.libsvm");
    LogisticRegressionModel mllib = new LogisticRegression().setMaxIter(100).setRegParam(0).fit(train);
    double mllibAccuracy = mllib.transform(test).filter("prediction = label").count() / (double) test.count();
    assertThat(accuracy).isCloseTo(mllibAccuracy, within(0.005));

    // The bundle: manifest last, verified files, model shape and standardisation for scoring.
    String uri = fit.outputs().get("model").uri();
    assertThat(uri).contains("/models/fit/t1-fit-1");
    org.apache.hadoop.fs.Path bundleDir = new org.apache.hadoop.fs.Path(uri);
    ModelBundle bundle = ModelBundle.open(bundleDir.getFileSystem(new Configuration()), bundleDir);
    BundleManifest m = bundle.manifest();
    assertThat(m.model()).containsEntry("type", "logistic").containsEntry("task", "binary")
        .containsEntry("num_features", 123);
    assertThat(m.features()).hasSize(123).startsWith("features[0]");
    assertThat(m.featureColumn()).isEqualTo("features");
    assertThat(m.standardization().mean()).hasSize(123);
    assertThat(m.labels()).containsExactly(0.0, 1.0);
    assertThat(m.metrics()).containsEntry("validation_accuracy", accuracy);
    assertThat(m.files()).containsKeys("weights.bin", "loss.png", "loss.csv");
    assertThat(bundle.file("loss.png")).startsWith((byte) 0x89, (byte) 'P', (byte) 'N', (byte) 'G');
    @SuppressWarnings("unchecked")
    List<java.util.Map<String, Object>> placement = (List<java.util.Map<String, Object>>) m.training().get("placement");
    assertThat(placement).hasSize(2);
    assertThat(placement).extracting(p -> p.get("rank")).containsExactlyInAnyOrder(0, 1);
  }

  @Test
  void anMlpLearnsThreeClassesFromNumericColumns() throws Exception {
    writeBlobs();
    RunLedger ledger = run("""
        name: blobs
        steps:
          - { id: raw, kind: load, path: blobs.csv, options: { header: true, inferSchema: true } }
          - id: fit
            kind: train
            input: raw
            label: cls
            workers: 2
            model: { type: mlp, hidden: [16, 8], activation: tanh, epochs: 20, batch_size: 64, lr: 0.01,
                     lr_schedule: cosine }
        """, "m1");
    StepRecord fit = ledger.step("fit");
    assertThat(fit.status()).as(String.valueOf(fit.error())).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(fit.metrics().get("train_accuracy")).isGreaterThan(0.9);
    org.apache.hadoop.fs.Path bundleDir = new org.apache.hadoop.fs.Path(fit.outputs().get("model").uri());
    BundleManifest m = ModelBundle.open(bundleDir.getFileSystem(new Configuration()), bundleDir).manifest();
    assertThat(m.model()).containsEntry("task", "multiclass").containsEntry("num_classes", 3)
        .containsEntry("hidden", List.of(16, 8));
    assertThat(m.features()).containsExactly("x", "y", "noise");
    assertThat(m.labels()).containsExactly(0.0, 1.0, 2.0);
    assertThat(m.training()).containsEntry("lr_schedule", "cosine");
  }

  /** Three Gaussian blobs, 900 rows of x, y, noise and the class. */
  void writeBlobs() throws Exception {
    StringBuilder csv = new StringBuilder("x,y,noise,cls\n");
    java.util.Random r = new java.util.Random(5);
    for (int i = 0; i < 900; i++) {
      int c = i % 3;
      double angle = 2 * Math.PI * c / 3;
      csv.append(String.format(java.util.Locale.ROOT, "%.4f,%.4f,%.4f,%d%n", 3 * Math.cos(angle) + r.nextGaussian(),
          3 * Math.sin(angle) + r.nextGaussian(), r.nextGaussian(), c));
    }
    Files.writeString(dir.resolve("blobs.csv"), csv.toString());
  }


  /**
   * The step end to end with {@code parallelism}: a two-stage pipeline (2 barrier tasks, one replica) trains the
   * parameters one data-parallel worker trains from the same seed and batch, and its bundle is an ordinary one.
   */
  @Test
  void aTwoStagePipelineTrainsWhatOneDataParallelWorkerTrains() throws Exception {
    writeBlobs();
    String yaml = """
        name: blobs
        steps:
          - { id: raw, kind: load, path: blobs.csv, options: { header: true, inferSchema: true } }
          - id: fit
            kind: train
            input: raw
            label: cls
            workers: %d
            model: { type: mlp, hidden: [16, 8], epochs: 3, batch_size: 64, optimizer: adam, lr: 0.01, seed: 7 }
        %s
        """;
    StepRecord piped = run(yaml.formatted(2, "    parallelism: { pipeline: 2, micro_batches: 4, schedule: gpipe }"),
        "pp").step("fit");
    assertThat(piped.status()).as(String.valueOf(piped.error())).isEqualTo(StepStatus.SUCCEEDED);
    StepRecord whole = run(yaml.formatted(1, ""), "dp").step("fit");
    assertThat(whole.status()).as(String.valueOf(whole.error())).isEqualTo(StepStatus.SUCCEEDED);

    float[] a = TrainedModel.weights(piped);
    float[] b = TrainedModel.weights(whole);
    assertThat(a).hasSameSizeAs(b);
    for (int i = 0; i < a.length; i++) {
      assertThat(a[i]).as("parameter %d", i).isCloseTo(b[i], within(1e-4f));
    }
    assertThat(piped.metrics().get("final_loss")).isCloseTo(whole.metrics().get("final_loss"), within(1e-5));
    assertThat(piped.metrics().get("train_accuracy")).isCloseTo(whole.metrics().get("train_accuracy"), within(1e-9));
    @SuppressWarnings("unchecked")
    java.util.Map<String, Object> pipeline = (java.util.Map<String, Object>) piped.details().get("pipeline");
    assertThat(pipeline).containsEntry("stages", 2).containsEntry("schedule", "gpipe")
        .containsEntry("micro_batches", 4);
    assertThat(whole.details()).doesNotContainKey("pipeline");
    assertThat(piped.metrics()).containsEntry("pipeline_bubble_theoretical", 0.2)
        .containsEntry("pipeline_bubble", ((Number) pipeline.get("bubble_measured")).doubleValue());
    assertThat(whole.metrics()).doesNotContainKey("pipeline_bubble");
    assertThat(progress).anyMatch(l -> l.startsWith("pipeline: 2 stages (layers 0..0 | 1..2) × 1 replica(s), 4 "
        + "micro-batches, gpipe; the schedule leaves 0.200 of each step idle"));
    assertThat(progress).anyMatch(l -> l.matches("pipeline: measured bubble 0\\.\\d{3} \\(schedule 0\\.200\\); "
        + "stage 0: compute \\d+\\.\\d s, waiting \\d+\\.\\d s, sent \\d+\\.\\d MB; stage 1: .*"));
  }

  @Test
  void badInputFailsBeforeAnyBarrierStageWithTheStepAndField() throws Exception {
    Files.writeString(dir.resolve("t.csv"), "a,b,name,y\n1,2,x,0\n3,4,y,1\n5,NaN,z,1\n");
    String base = """
        name: bad
        steps:
          - { id: raw, kind: load, path: t.csv, options: { header: true, inferSchema: true } }
        """;
    RunLedger missing = run(base + """
          - { id: fit, kind: train, input: raw, label: target, model: { type: logistic } }
        """, "b1");
    assertThat(missing.step("fit").error()).endsWith("wf.yaml: step 'fit' field 'label': column 'target' is not in "
        + "input 'raw' (columns: a, b, name, y)");
    RunLedger text = run(base + """
          - { id: fit, kind: train, input: raw, label: y, features: [a, name], model: { type: logistic } }
        """, "b2");
    assertThat(text.step("fit").error()).endsWith("step 'fit' field 'features': column 'name' is string (expected a "
        + "numeric column or one vector column)");
    RunLedger nan = run(base + """
          - { id: fit, kind: train, input: raw, label: y, features: [a, b], model: { type: logistic } }
        """, "b3");
    assertThat(nan.step("fit").error()).endsWith("step 'fit' field 'features': column 'b' is null, NaN or infinite "
        + "in 1 of 3 rows (expected a finite number in every row; filter or impute them in a sql step)");
    RunLedger tooFew = run(base + """
          - { id: fit, kind: train, input: raw, label: y, features: [a], workers: 4, model: { type: logistic } }
        """, "b4");
    assertThat(tooFew.step("fit").error()).endsWith("step 'fit' field 'workers': 4 workers but input 'raw' has only 3 "
        + "rows (expected at most one worker per row)");
    assertThat(List.of(missing, text, nan, tooFew)).allMatch(l -> l.status() == RunStatus.FAILED);
  }

  @Test
  void anUnknownModelTypeOrOptimizerIsRejectedBeforeTheRun() throws Exception {
    Path f = dir.resolve("wf.yaml");
    Files.writeString(f, """
        name: bad
        steps:
          - { id: raw, kind: load, path: t.csv }
          - { id: a, kind: train, input: raw, label: y, model: { type: forest } }
          - { id: b, kind: train, input: raw, label: y, model: { type: logistic, optimizer: adamw } }
          - { id: c, kind: train, input: raw, label: y, model: { type: logistic, epoch: 3 } }
        """);
    WorkflowLoader.WorkflowException e = org.assertj.core.api.Assertions.catchThrowableOfType(
        () -> new WorkflowLoader(StepKinds.discover()).load(f), WorkflowLoader.WorkflowException.class);
    assertThat(e.problems()).hasSize(3);
    assertThat(e.problems().get(0)).startsWith(f + ": step 'a' field 'model': Invalid model field 'type': ");
    assertThat(e.problems().get(1)).startsWith(f + ": step 'b' field 'model': Invalid model field 'optimizer': ");
    assertThat(e.problems().get(2)).startsWith(f + ": step 'c' field 'model.epoch': unknown field (expected one of: ");
  }

  @Test
  void checkpointsAreKeptAndACheckpointOfAnotherConfigurationIsRefusedUntilFresh() throws Exception {
    String step = """
          - id: fit
            kind: train
            input: train_raw
            label: label
            workers: 2
            model: { type: mlp, hidden: [%d], epochs: 2, batch_size: 512, optimizer: adam, lr: 0.005 }
            checkpoint: { every_steps: 20, keep: 2%s }
        """;
    RunLedger first = run(a9a(step.formatted(8, "")), "ck1");
    StepRecord fit = first.step("fit");
    assertThat(fit.status()).as(String.valueOf(fit.error())).isEqualTo(StepStatus.SUCCEEDED);
    // 64 steps per epoch, 128 in all: saved at 20, 40, …, 120 and at the end; the newest two are kept.
    assertThat(fit.metrics().get("checkpoints_written")).isEqualTo(7.0);
    assertThat(fit.metrics().get("checkpoint_failures")).isZero();
    assertThat(fit.metrics().get("resumed_from_step")).isZero();
    Path root = dir.resolve("ws/checkpoints/ck1/fit");
    try (var dirs = Files.list(root)) {
      assertThat(dirs.map(d -> d.getFileName().toString())).containsExactlyInAnyOrder("step-120", "step-128");
    }
    assertThat(root.resolve("step-128/manifest.json")).exists();
    assertThat(fit.details().get("checkpoints")).isEqualTo(root.toUri().toString().replaceAll("/$", "")
        .replace("file:///", "file:/"));

    // Another network for the same run and step: the saved state cannot be its starting point.
    RunLedger changed = run(a9a(step.formatted(16, "")), "ck1", true);
    StepRecord refused = changed.step("fit");
    assertThat(refused.status()).isEqualTo(StepStatus.FAILED);
    assertThat(refused.errorCategory()).isEqualTo("USER");
    assertThat(refused.error()).startsWith("Cannot resume from checkpoint file:" + root.resolve("step-128"))
        .contains("it was written for another model or training configuration (fingerprint ")
        .endsWith("to discard it and start fresh, set 'checkpoint: { resume: fresh }' in the step");

    RunLedger fresh = run(a9a(step.formatted(16, ", resume: fresh")), "ck1", true);
    StepRecord again = fresh.step("fit");
    assertThat(again.status()).as(String.valueOf(again.error())).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(again.metrics().get("resumed_from_step")).isZero();
    assertThat(again.metrics().get("checkpoints_written")).isEqualTo(7.0);
  }
}
