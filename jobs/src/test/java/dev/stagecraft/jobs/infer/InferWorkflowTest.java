package dev.stagecraft.jobs.infer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.inference.spark.InferStep;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.testing.LocalSpark;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Task;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The {@code infer} step through the engine on local[2], against the runtimes run directly on the same inputs. */
class InferWorkflowTest {
  @TempDir Path dir;
  final SparkSession spark = LocalSpark.get();

  RunLedger run(String steps, String runId) throws Exception {
    Path f = dir.resolve("wf-" + runId + ".yaml");
    Files.writeString(f, "name: infer\nsteps:\n" + steps);
    StepKinds kinds = StepKinds.discover();
    WorkflowSpec spec = new WorkflowLoader(kinds).load(f);
    return new Engine(spark, kinds, new EngineListener() {}).run(spec,
        Engine.Options.run(runId).withWorkspace(dir.resolve("ws").toString()));
  }

  /** {@code rows} rows: id, then {@code k} doubles x0… drawn from a seeded generator. */
  Path numericInput(String name, int rows, int k, long seed) {
    StructType schema = new StructType().add("id", DataTypes.LongType, false);
    for (int j = 0; j < k; j++) {
      schema = schema.add("x" + j, DataTypes.DoubleType, true);
    }
    SplittableRandom r = new SplittableRandom(seed);
    List<Row> data = new ArrayList<>();
    for (int i = 0; i < rows; i++) {
      Object[] v = new Object[k + 1];
      v[0] = (long) i;
      for (int j = 0; j < k; j++) {
        v[j + 1] = r.nextDouble() * 4 - 1;
      }
      data.add(RowFactory.create(v));
    }
    Path p = dir.resolve(name);
    spark.createDataFrame(data, schema).write().parquet(p.toString());
    return p;
  }

  static List<String> names(int k) {
    List<String> n = new ArrayList<>();
    for (int j = 0; j < k; j++) {
      n.add("x" + j);
    }
    return n;
  }

  Map<Long, Row> output(StepRecord r, String name) {
    Map<Long, Row> out = new HashMap<>();
    for (Row row : spark.read().parquet(r.outputs().get(name).uri()).collectAsList()) {
      assertThat(out.put(row.getLong(row.fieldIndex("id")), row)).as("duplicate id").isNull();
    }
    return out;
  }

  @Test
  void theExampleWorkflowScoresTheA9aTestSetWithTheModelItTrained() throws Exception {
    Path file = Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/workflow.yaml");
    StepKinds kinds = StepKinds.discover();
    RunLedger ledger = new Engine(spark, kinds, new EngineListener() {}).run(new WorkflowLoader(kinds).load(file),
        Engine.Options.run("demo").withWorkspace(dir.resolve("ws").toString()));
    StepRecord score = ledger.step("score");
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(score.metrics()).containsEntry("rows", 16281.0).containsEntry("bad_rows", 0.0);
    assertThat(score.metrics().get("accuracy")).as("LIBLINEAR reaches about 0.85").isGreaterThan(0.84);
    Dataset<Row> out = spark.read().parquet(score.outputs().get("output").uri());
    assertThat(out.columns()).containsExactly("row_id", "label", "prediction", "probability");
    assertThat(out.select("row_id").distinct().count()).isEqualTo(16281);
    double accuracy = out.filter("prediction = label").count() / 16281.0;
    assertThat(accuracy).isEqualTo(score.metrics().get("accuracy"));
  }

  @Test
  void mlpBundlePredictionsEqualTheTrainersNetworkRunDirectly() throws Exception {
    int k = 5;
    int rows = 1000;
    double[] mean = {0.5, 1, -0.5, 0, 2};
    double[] std = {2, 1, 0.5, 3, 1};
    float[] params = Bundles.randomParameters(List.of(k, 8, 4, 1), 7);
    Path bundle = Bundles.write(dir.resolve("mlp"), "mlp", List.of(8, 4), "binary", 2, names(k), null, mean, std,
        params);
    Path input = numericInput("in", rows, k, 11);

    RunLedger ledger = run("""
          - id: score
            kind: infer
            model: %s
            input: %s
            id_columns: [id]
            batch_size: 64
        """.formatted(bundle, input), "r1");

    StepRecord score = ledger.step("score");
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    Map<Long, Row> out = output(score, "output");
    assertThat(out).hasSize(rows);
    assertThat(score.metrics()).containsEntry("bad_rows", 0.0).containsEntry("rows", (double) rows);

    // The trainer's own network (DJL's Linear blocks), on the same standardised inputs.
    List<Row> in = spark.read().parquet(input.toString()).orderBy("id").collectAsList();
    FloatBuffer x = FloatBuffer.allocate(rows * k);
    for (Row r : in) {
      for (int j = 0; j < k; j++) {
        x.put((float) ((r.getDouble(j + 1) - mean[j]) / std[j]));
      }
    }
    x.flip();
    ModelSpec spec = ModelSpec.fromMap(Map.of("type", "mlp", "hidden", List.of(8, 4)));
    float[] expected;
    try (FlatModel model = FlatModel.create(spec, Task.BINARY, k, 2, Devices.select(Optional.empty()))) {
      model.setParameters(params);
      expected = model.predict(x, rows);
    }
    int positives = 0;
    for (int i = 0; i < rows; i++) {
      Row r = out.get((long) i);
      assertThat(r.getDouble(r.fieldIndex("probability"))).as("row %d", i).isCloseTo(expected[i], within(1e-6));
      double prediction = r.getDouble(r.fieldIndex("prediction"));
      assertThat(prediction).isEqualTo(expected[i] >= 0.5 ? 1.0 : 0.0);
      positives += (int) prediction;
    }
    assertThat(positives).as("a model that predicts one class only proves little").isBetween(50, rows - 50);
  }

  @Test
  void badRowsAreQuarantinedWithTheirReasonAndGoodRowsScored() throws Exception {
    Path bundle = Bundles.write(dir.resolve("lr"), "logistic", List.of(), "binary", 2, List.of("a", "b", "c"), null,
        new double[] {0, 0, 0}, new double[] {1, 1, 1}, new float[] {1, -1, 0.5f, 0.1f});
    StructType schema = new StructType().add("id", DataTypes.LongType).add("a", DataTypes.DoubleType)
        .add("b", DataTypes.FloatType).add("c", DataTypes.StringType);
    List<Row> data = List.of(
        RowFactory.create(1L, 1.0, 2.0f, "3"),
        RowFactory.create(2L, null, 2.0f, "3"),
        RowFactory.create(3L, 1.0, Float.NaN, "3"),
        RowFactory.create(4L, 1.0, 2.0f, "three"),
        RowFactory.create(5L, Double.POSITIVE_INFINITY, 2.0f, "3"),
        RowFactory.create(6L, 1.0, 2.0f, null),
        RowFactory.create(7L, -1.0, 0.5f, "0.25"));
    Path input = dir.resolve("bad");
    spark.createDataFrame(data, schema).write().parquet(input.toString());

    RunLedger ledger = run("""
          - id: score
            kind: infer
            model: %s
            input: %s
            max_bad_fraction: 0.9
        """.formatted(bundle, input), "r2");

    StepRecord score = ledger.step("score");
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    Map<Long, Row> bad = output(score, "quarantine");
    Map<Long, String> reasons = new HashMap<>();
    bad.forEach((id, r) -> reasons.put(id, r.getString(r.fieldIndex("reason"))));
    assertThat(reasons).containsExactlyInAnyOrderEntriesOf(Map.of(
        2L, "feature 'a' is null",
        3L, "feature 'b' is NaN or infinite",
        4L, "feature 'c' is not a number",
        5L, "feature 'a' is NaN or infinite",
        6L, "feature 'c' is null"));
    Map<Long, Row> good = output(score, "output");
    assertThat(good.keySet()).containsExactlyInAnyOrder(1L, 7L);
    double z = 1 * 1.0 - 1 * 2.0 + 0.5 * 3 + 0.1;
    assertThat(good.get(1L).getDouble(good.get(1L).fieldIndex("probability")))
        .isCloseTo(1 / (1 + Math.exp(-z)), within(1e-6));
    assertThat(score.metrics()).containsEntry("bad_rows", 5.0).containsEntry("rows", 7.0);
  }

  @Test
  void badArraysAreQuarantinedWithTheFirstBadElement() throws Exception {
    // std 1e-38: a finite 1e10 standardises beyond a float's range.
    Path bundle = Bundles.write(dir.resolve("lr-array"), "logistic", List.of(), "binary", 2, List.of(), "v",
        new double[] {0, 1, 0}, new double[] {1, 1e-38, 1}, new float[] {1, -1, 0.5f, 0.1f});
    StructType schema = new StructType().add("id", DataTypes.LongType)
        .add("v", DataTypes.createArrayType(DataTypes.DoubleType, true));
    List<Row> data = List.of(
        RowFactory.create(1L, new Double[] {1.0, 1.0, 3.0}),
        RowFactory.create(2L, new Double[] {1.0, null, 3.0}),
        RowFactory.create(3L, new Double[] {1.0, 1.0, Double.NaN}),
        RowFactory.create(4L, new Double[] {Double.NEGATIVE_INFINITY, null, 3.0}),
        RowFactory.create(5L, new Double[] {1.0, 1e10, 3.0}),
        RowFactory.create(6L, null),
        RowFactory.create(7L, new Double[] {1.0, 1.0}),
        RowFactory.create(8L, new Double[] {-1.0, 1.0, 0.25}));
    Path input = dir.resolve("bad-arrays");
    spark.createDataFrame(data, schema).write().parquet(input.toString());

    StepRecord score = run("""
          - id: score
            kind: infer
            model: %s
            input: %s
            max_bad_fraction: 0.9
        """.formatted(bundle, input), "r2a").step("score");
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    Map<Long, String> reasons = new HashMap<>();
    output(score, "quarantine").forEach((id, r) -> reasons.put(id, r.getString(r.fieldIndex("reason"))));
    assertThat(reasons).containsExactlyInAnyOrderEntriesOf(Map.of(
        2L, "feature 'v[1]' is null",
        3L, "feature 'v[2]' is NaN or infinite",
        4L, "feature 'v[0]' is NaN or infinite",
        5L, "feature 'v[1]' is NaN or infinite",
        6L, "column 'v' is null",
        7L, "column 'v' has 2 values (expected 3)"));
    Map<Long, Row> good = output(score, "output");
    assertThat(good.keySet()).containsExactlyInAnyOrder(1L, 8L);
    double z = 1 * 1.0 - 1 * 0.0 + 0.5 * 3 + 0.1;
    assertThat(good.get(1L).getDouble(good.get(1L).fieldIndex("probability")))
        .isCloseTo(1 / (1 + Math.exp(-z)), within(1e-6));
  }

  @Test
  void tooManyBadRowsOrAMissingFeatureColumnFailTheStepWithAClearMessage() throws Exception {
    Path bundle = Bundles.write(dir.resolve("lr"), "logistic", List.of(), "binary", 2, List.of("x0", "x1", "zz"),
        null, new double[] {0, 0, 0}, new double[] {1, 1, 1}, new float[] {1, -1, 0.5f, 0.1f});
    Path input = numericInput("in", 20, 2, 3);
    RunLedger missing = run("""
          - { id: score, kind: infer, model: %s, input: %s }
        """.formatted(bundle, input), "r3");
    assertThat(missing.step("score").status()).isEqualTo(StepStatus.FAILED);
    assertThat(missing.step("score").error()).contains("Cannot score input '" + input + "' with model "
        + bundle + ": it has no feature column 'zz' (the model takes: x0, x1, zz; the input has: id, x0, x1)");

    RunLedger tooMany = run("""
          - id: score
            kind: infer
            model: %s
            input: %s
            preprocess: ["id", "x0", "IF(id < 5, NULL, x1) AS x1", "x0 AS zz"]
            max_bad_fraction: 0.2
        """.formatted(bundle, input), "r4");
    assertThat(tooMany.step("score").status()).isEqualTo(StepStatus.FAILED);
    assertThat(tooMany.step("score").error()).contains("step 'score' field 'max_bad_fraction': 5 of 20 rows "
        + "(25.00%) cannot be scored, more than the step's max_bad_fraction allows (20.00%); for example: "
        + "feature 'x1' is null");
    assertThat(tooMany.step("score").outputs()).isEmpty();
  }

  @Test
  void theModelIsLoadedOncePerExecutorForAllPartitionsAndTasks() throws Exception {
    int k = 4;
    Path bundle = Bundles.write(dir.resolve("lr"), "logistic", List.of(), "binary", 2, names(k), null,
        new double[k], new double[] {1, 1, 1, 1}, Bundles.randomParameters(List.of(k, 1), 5));
    Path input = numericInput("in", 4000, k, 5);
    long before = InferStep.modelLoads();
    RunLedger ledger = run("""
          - id: score
            kind: infer
            model: %s
            input: %s
            preprocess: "SELECT /*+ REPARTITION(8) */ * FROM input"
            batch_size: 100
        """.formatted(bundle, input), "r5");
    StepRecord score = ledger.step("score");
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(InferStep.lastPlacements()).hasSize(8)
        .allSatisfy(p -> assertThat(p).contains("gpu=none", "device=cpu()", "loads=1"));
    assertThat(InferStep.modelLoads() - before).isEqualTo(1);
    assertThat(output(score, "output")).hasSize(4000);
  }

  @Test
  void onnxPredictionsEqualOnnxRuntimeRunDirectly() throws Exception {
    int k = 4;
    float[] w = {0.5f, -1.25f, 2f, 0.75f};
    byte[] onnx = TinyOnnx.logistic(w, -0.3f);
    Path model = dir.resolve("tiny.onnx");
    Files.write(model, onnx);
    int rows = 300;
    Path input = numericInput("in", rows, k, 9);

    RunLedger ledger = run("""
          - id: score
            kind: infer
            model: %s
            input: %s
            features: [x0, x1, x2, x3]
            id_columns: [id]
            batch_size: 50
        """.formatted(model, input), "r6");
    StepRecord score = ledger.step("score");
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    Map<Long, Row> out = output(score, "output");
    assertThat(out).hasSize(rows);
    assertThat(spark.read().parquet(score.outputs().get("output").uri()).columns())
        .containsExactly("id", "logit", "probability");

    List<Row> in = spark.read().parquet(input.toString()).orderBy("id").collectAsList();
    float[] x = new float[rows * k];
    for (int i = 0; i < rows; i++) {
      for (int j = 0; j < k; j++) {
        x[i * k + j] = (float) in.get(i).getDouble(j + 1);
      }
    }
    OrtEnvironment env = OrtEnvironment.getEnvironment();
    try (OrtSession session = env.createSession(onnx, new OrtSession.SessionOptions());
        OnnxTensor t = OnnxTensor.createTensor(env, FloatBuffer.wrap(x), new long[] {rows, k});
        OrtSession.Result result = session.run(Map.of("X", t))) {
      float[][] logit = (float[][]) result.get("logit").get().getValue();
      float[][] probability = (float[][]) result.get("probability").get().getValue();
      for (int i = 0; i < rows; i++) {
        Row r = out.get((long) i);
        assertThat(r.getDouble(1)).isEqualTo(logit[i][0]);
        assertThat(r.getDouble(2)).isEqualTo(probability[i][0]);
        double z = -0.3;
        for (int j = 0; j < k; j++) {
          z += w[j] * x[i * k + j];
        }
        assertThat(r.getDouble(1)).as("the hand-written model computes X·W + b").isCloseTo(z, within(1e-4));
      }
    }
  }

  @Test
  void onnxOnOneArrayColumnNarrowsDoublesAsItCopiesAndQuarantinesTheFirstBadElement() throws Exception {
    // An ONNX graph standardises inside itself: the array reaches the scoring task as read (doubles or floats).
    float[] w = {0.5f, -1.25f, 2f};
    Path model = dir.resolve("tiny3.onnx");
    Files.write(model, TinyOnnx.logistic(w, -0.3f));
    StructType doubles = new StructType().add("id", DataTypes.LongType)
        .add("v", DataTypes.createArrayType(DataTypes.DoubleType, true));
    Path d = dir.resolve("onnx-doubles");
    spark.createDataFrame(List.of(
        RowFactory.create(1L, new Double[] {1.0, 2.0, 3.0}),
        RowFactory.create(2L, new Double[] {1.0, null, 3.0}),
        RowFactory.create(3L, new Double[] {1.0, 1.0, Double.NaN}),
        RowFactory.create(4L, new Double[] {1e300, 1.0, 1.0}), // finite, but beyond a float's range
        RowFactory.create(5L, null),
        RowFactory.create(6L, new Double[] {1.0, 1.0}),
        RowFactory.create(7L, new Double[] {-1.0, 0.5, 0.1})), doubles).write().parquet(d.toString());
    StructType floats = new StructType().add("id", DataTypes.LongType)
        .add("v", DataTypes.createArrayType(DataTypes.FloatType, true));
    Path f = dir.resolve("onnx-floats");
    spark.createDataFrame(List.of(
        RowFactory.create(1L, new Float[] {1f, 2f, 3f}),
        RowFactory.create(3L, new Float[] {1f, Float.POSITIVE_INFINITY, 1f}),
        RowFactory.create(7L, new Float[] {-1f, 0.5f, 0.1f})), floats).write().parquet(f.toString());

    for (Path input : List.of(d, f)) {
      StepRecord score = run("""
            - id: score
              kind: infer
              model: %s
              input: %s
              features: [v]
              id_columns: [id]
              max_bad_fraction: 0.9
          """.formatted(model, input), "r-" + input.getFileName()).step("score");
      assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
      Map<Long, String> reasons = new HashMap<>();
      output(score, "quarantine").forEach((id, r) -> reasons.put(id, r.getString(r.fieldIndex("reason"))));
      Map<Long, Row> good = output(score, "output");
      if (input.equals(d)) {
        assertThat(reasons).containsExactlyInAnyOrderEntriesOf(Map.of(
            2L, "feature 'v[1]' is null",
            3L, "feature 'v[2]' is NaN or infinite",
            4L, "feature 'v[0]' is NaN or infinite",
            5L, "column 'v' is null",
            6L, "column 'v' has 2 values (expected 3)"));
      } else {
        assertThat(reasons).containsExactlyEntriesOf(Map.of(3L, "feature 'v[1]' is NaN or infinite"));
      }
      assertThat(good.keySet()).containsExactlyInAnyOrder(1L, 7L);
      float[][] x = {{1f, 2f, 3f}, {-1f, 0.5f, 0.1f}};
      long[] ids = {1L, 7L};
      for (int i = 0; i < 2; i++) {
        double z = -0.3;
        for (int j = 0; j < 3; j++) {
          z += w[j] * x[i][j];
        }
        Row r = good.get(ids[i]);
        assertThat(r.getDouble(r.fieldIndex("logit"))).as("row %d of %s", ids[i], input.getFileName())
            .isCloseTo(z, within(1e-5));
      }
    }
  }

  @Test
  void onnxModelWithTheWrongNumberOfFeaturesIsRefusedBeforeScoring() throws Exception {
    Path model = dir.resolve("tiny.onnx");
    Files.write(model, TinyOnnx.logistic(new float[] {1, 2, 3}, 0));
    Path input = numericInput("in", 10, 4, 1);
    RunLedger ledger = run("""
          - { id: score, kind: infer, model: %s, input: %s, features: [x0, x1] }
        """.formatted(model, input), "r7");
    assertThat(ledger.step("score").status()).isEqualTo(StepStatus.FAILED);
    assertThat(ledger.step("score").error()).contains("step 'score' field 'features': 2 column(s) but ONNX model "
        + model + " takes 3 features (input 'X')");
  }
}
