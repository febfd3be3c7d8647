package dev.stagecraft.inference.spark;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.stagecraft.inference.bundle.BundleManifest;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.inference.bundle.ParameterFile;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.testing.LocalSpark;
import dev.stagecraft.testing.TestStepContext;
import java.io.ByteArrayOutputStream;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The {@code infer} step where it lives: its run (preprocessing, the scoring tasks, the quarantine files, metrics)
 * through a test context on local[2], without the engine. The engine's part (commit, ledger, retries of lost tasks) is
 * tested in the jobs module.
 */
class InferStepTest {
  @TempDir Path dir;
  final SparkSession spark = LocalSpark.get();

  /** A logistic bundle over features a, b, c (mean 0, std 1): p = σ(1·a − 1·b + 0.5·c + 0.1). */
  Path logisticBundle() throws Exception {
    Map<String, Object> model = new LinkedHashMap<>();
    model.put("type", "logistic");
    model.put("hidden", List.of());
    model.put("activation", "relu");
    model.put("task", "binary");
    model.put("num_features", 3);
    model.put("num_classes", 2);
    ByteArrayOutputStream weights = new ByteArrayOutputStream();
    ParameterFile.write(new float[] {1, -1, 0.5f, 0.1f}, weights);
    BundleManifest m = new BundleManifest(BundleManifest.FORMAT_VERSION, "lr", "v1", "now", "run", "fit", model,
        List.of("a", "b", "c"), null, "label", new BundleManifest.Standardization(new double[3],
            new double[] {1, 1, 1}), List.of(0.0, 1.0), Map.of(), Map.of(), null);
    Path bundle = dir.resolve("bundle");
    ModelBundle.write(FileSystem.getLocal(new Configuration()), new org.apache.hadoop.fs.Path(bundle.toUri()), m,
        Map.of(ModelBundle.WEIGHTS, weights.toByteArray()));
    return bundle;
  }

  Dataset<Row> rows() {
    StructType schema = new StructType().add("id", DataTypes.LongType).add("a", DataTypes.DoubleType)
        .add("b", DataTypes.FloatType).add("c", DataTypes.StringType).add("label", DataTypes.DoubleType);
    return spark.createDataFrame(List.of(
        RowFactory.create(1L, 1.0, 2.0f, "3", 1.0),
        RowFactory.create(2L, null, 2.0f, "3", 0.0),
        RowFactory.create(3L, 1.0, Float.NaN, "3", 0.0),
        RowFactory.create(4L, 1.0, 2.0f, "three", 0.0),
        RowFactory.create(5L, -1.0, 0.5f, "0.25", 1.0)), schema);
  }

  TestStepContext context(Map<String, Object> fields) {
    StepConfig step = TestStepContext.step("score", "infer", fields);
    new InferStep().validate(step);
    return TestStepContext.of(spark, step, dir.resolve("attempt")).upstream("raw", rows());
  }

  static double sigmoid(double z) {
    return 1 / (1 + Math.exp(-z));
  }

  @Test
  void scoresGoodRowsSetsBadRowsAsideWithTheirReasonAndCountsBoth() throws Exception {
    TestStepContext ctx = context(Map.of("model", logisticBundle().toString(), "input", "raw",
        "id_columns", List.of("id", "label"), "max_bad_fraction", 0.9, "batch_size", 2));

    new InferStep().run(ctx);

    Map<Long, Row> out = byId(ctx.table("output"));
    assertThat(out.keySet()).containsExactlyInAnyOrder(1L, 5L);
    assertThat(ctx.table("output").columns()).containsExactly("id", "label", "prediction", "probability");
    assertThat(out.get(1L).<Double>getAs("probability")).isCloseTo(sigmoid(1 - 2 + 1.5 + 0.1), within(1e-6));
    assertThat(out.get(5L).<Double>getAs("probability")).isCloseTo(sigmoid(-1 - 0.5 + 0.125 + 0.1), within(1e-6));
    assertThat(out.get(1L).<Double>getAs("prediction")).isEqualTo(1.0);
    assertThat(out.get(5L).<Double>getAs("prediction")).isEqualTo(0.0);

    Map<Long, String> reasons = new HashMap<>();
    byId(ctx.table("quarantine")).forEach((id, r) -> reasons.put(id, r.getAs("reason")));
    assertThat(reasons).containsExactlyInAnyOrderEntriesOf(Map.of(
        2L, "feature 'a' is null",
        3L, "feature 'b' is NaN or infinite",
        4L, "feature 'c' is not a number"));
    assertThat(ctx.metrics()).containsEntry("rows", 5.0).containsEntry("bad_rows", 3.0)
        .containsEntry("scored_rows", 2.0).containsEntry("bad_fraction", 0.6);
    assertThat(ctx.metrics().get("accuracy")).as("row 1 right (label 1), row 5 wrong (label 1)").isEqualTo(0.5);
    assertThat(ctx.progressLines()).anyMatch(l -> l.startsWith("reading model "));
  }

  @Test
  void moreBadRowsThanMaxBadFractionAllowsFailTheAttemptNamingTheFieldAndAnExample() throws Exception {
    TestStepContext ctx = context(Map.of("model", logisticBundle().toString(), "input", "raw",
        "id_columns", List.of("id"), "max_bad_fraction", 0.5));

    assertThatThrownBy(() -> new InferStep().run(ctx))
        .isInstanceOf(StagecraftException.class)
        .hasMessageContaining("step 'score'").hasMessageContaining("max_bad_fraction")
        .hasMessageContaining("3 of 5 rows (60.00%) cannot be scored")
        .hasMessageMatching(".*; for example: feature '(a' is null|b' is NaN or infinite|c' is not a number)");
    assertThat(ctx.outputs()).as("the quarantine is never written for a failed attempt").doesNotContainKey(
        "quarantine");
  }

  @Test
  void aPreprocessQueryReadsTheViewInputAndFeedsTheModel() throws Exception {
    TestStepContext ctx = context(Map.of("model", logisticBundle().toString(), "input", "raw",
        "preprocess", "SELECT id, coalesce(a, 0D) AS a, b, c FROM input WHERE id IN (1, 2)"));

    new InferStep().run(ctx);

    Map<Long, Row> out = byId(ctx.table("output"));
    assertThat(out.keySet()).containsExactlyInAnyOrder(1L, 2L);
    assertThat(out.get(2L).<Double>getAs("probability")).isCloseTo(sigmoid(0 - 2 + 1.5 + 0.1), within(1e-6));
    assertThat(ctx.rowsWritten("quarantine")).isZero();
  }

  @Test
  void aMissingFeatureColumnNamesTheColumnTheModelAndTheInput() throws Exception {
    String bundle = logisticBundle().toString();
    TestStepContext ctx = context(Map.of("model", bundle, "input", "raw", "preprocess", List.of("id", "a", "b")));

    assertThatThrownBy(() -> new InferStep().run(ctx))
        .isInstanceOf(StagecraftException.class)
        .hasMessageContaining("Cannot score input 'raw' with model " + bundle)
        .hasMessageContaining("no feature column 'c'");
  }

  @Test
  void validationNamesTheStepAndTheField() {
    InferStep kind = new InferStep();
    Map<String, Object> base = Map.of("model", "m", "input", "raw");
    assertThatThrownBy(() -> kind.validate(with(base, "batch_size", 0)))
        .hasMessageContaining("batch_size").hasMessageContaining("expected at least 1");
    assertThatThrownBy(() -> kind.validate(with(base, "max_bad_fraction", 1.5)))
        .hasMessageContaining("max_bad_fraction").hasMessageContaining("expected 0 to 1");
    assertThatThrownBy(() -> kind.validate(with(base, "output", Map.of("score", "s"))))
        .hasMessageContaining("output.score").hasMessageContaining("expected one of: prediction, probability");
    assertThatThrownBy(() -> kind.validate(with(base, "preprocess", Map.of("a", "b"))))
        .hasMessageContaining("preprocess").hasMessageContaining("is a map");
    assertThatThrownBy(() -> kind.validate(TestStepContext.step("score", "infer", Map.of("model", "m.onnx",
        "input", "raw")))).hasMessageContaining("features").hasMessageContaining("is missing");
    kind.validate(with(base, "batch_size", 4096)); // a valid step passes
  }

  static StepConfig with(Map<String, Object> base, String field, Object value) {
    Map<String, Object> fields = new LinkedHashMap<>(base);
    fields.put(field, value);
    return TestStepContext.step("score", "infer", fields);
  }

  static Map<Long, Row> byId(Dataset<Row> table) {
    Map<Long, Row> out = new HashMap<>();
    for (Row r : table.collectAsList()) {
      assertThat(out.put(r.<Long>getAs("id"), r)).as("duplicate id %s", r.<Long>getAs("id")).isNull();
    }
    return out;
  }
}
