package dev.stagecraft.inference.spark;

import static org.apache.spark.sql.functions.coalesce;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.concat;
import static org.apache.spark.sql.functions.expr;
import static org.apache.spark.sql.functions.lit;
import static org.apache.spark.sql.functions.size;
import static org.apache.spark.sql.functions.when;

import dev.stagecraft.spi.StagecraftException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.spark.ml.linalg.VectorUDT;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.NumericType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The preprocessing of an {@code infer} step as Spark SQL expressions — so it stays eligible for the RAPIDS
 * Accelerator, unlike Java code per row: each feature is read (a column, or an element of an array or ML vector
 * column), cast to double, standardised with the model's {@code (x - mean) / std} and cast to FLOAT; one more column
 * gives the reasons only SQL can see (a null array or one of the wrong length, a string that is not a number), or
 * null. Null and NaN/infinite features are left to {@link ScoringTask}, which tests each float as it copies it: a
 * {@code CASE} per feature made a projection so large (a9a: 123 features) that compiling it took tens of seconds per
 * step and evaluating it cost several times the Parquet read.
 *
 * <p>Output columns: {@code [id columns…, _stagecraft_reason, _stagecraft_features]}, the last an ARRAY&lt;FLOAT&gt; of
 * the standardised features in model order (ARRAY&lt;DOUBLE&gt; or ARRAY&lt;FLOAT&gt; as read, when the features are one
 * array or vector column with nothing to standardise: {@link Source#wholeArray}): the layout {@link ScoringTask}
 * reads. One array column, not a column per
 * feature: a projection with more than {@code spark.sql.codegen.maxFields} (100) output columns falls out of
 * whole-stage code generation, and writing 123 fields of a row one by one cost more than the Parquet scan (profiled);
 * the array's floats lie contiguous in the row, so the scoring task copies them into its Arrow batch in one go.
 */
final class FeaturePlan {
  static final String REASON = "_stagecraft_reason";
  static final String FEATURES = "_stagecraft_features";
  /** Above this many features the preprocessing runs without whole-stage code generation (see InferStep). */
  static final int MAX_FUSED_FEATURES = 16;

  /**
   * Where the features come from.
   *
   * @param columns one numeric (or string) column per feature, in model order; empty if {@code vector} is set
   * @param vector one array or ML vector column holding all features in order, or null
   * @param numFeatures how many features the model takes
   * @param mean per-feature mean to subtract, or null for none
   * @param std per-feature standard deviation to divide by, or null for none
   */
  record Source(List<String> columns, String vector, int numFeatures, double[] mean, double[] std) {
    Source {
      columns = List.copyOf(columns);
    }

    /** Every column the features are read from. */
    List<String> inputColumns() {
      return vector != null ? List.of(vector) : columns;
    }

    /**
     * Whether the features reach the scoring task as the input's own array (ARRAY&lt;FLOAT&gt; or ARRAY&lt;DOUBLE&gt;),
     * standardised as they are copied into the batch: one array or vector column.
     */
    boolean wholeArray() {
      return vector != null;
    }

    String featureName(int j) {
      return vector != null ? vector + "[" + j + "]" : columns.get(j);
    }
  }

  private FeaturePlan() {}

  /**
   * How the features arrive at the scoring task, in the column {@link #apply} makes.
   *
   * @param names per feature, its name in quarantine reasons ({@code age}, {@code features[3]})
   * @param doubles whether the array holds doubles (narrowed to floats as they are copied), not floats
   * @param mean per feature, what the scoring task subtracts, or null when SQL standardised them (or none is needed)
   * @param std per feature, what the scoring task divides by after subtracting the mean, or null
   */
  record Layout(String[] names, boolean doubles, double[] mean, double[] std) implements java.io.Serializable {
    int numFeatures() {
      return names.length;
    }
  }

  /** The layout of the features column of {@code prepared}, which {@link #apply} made from {@code source}. */
  static Layout layout(Source source, StructType prepared) {
    String[] names = new String[source.numFeatures()];
    for (int j = 0; j < names.length; j++) {
      names[j] = source.featureName(j);
    }
    boolean doubles = ((ArrayType) field(prepared, FEATURES).dataType()).elementType() == DataTypes.DoubleType;
    return source.wholeArray() ? new Layout(names, doubles, source.mean(), source.std())
        : new Layout(names, doubles, null, null);
  }

  /**
   * Checks the input's schema against the model before anything is scored.
   *
   * @throws StagecraftException (user) naming the missing or mistyped column, the model and the input
   */
  static void check(StructType schema, Source source, List<String> ids, String model, String input) {
    for (String c : source.inputColumns()) {
      StructField f = field(schema, c);
      if (f == null) {
        throw StagecraftException.user("Cannot score input '%s' with model %s: it has no feature column '%s' "
            + "(the model takes: %s; the input has: %s)", input, model, c, describe(source), names(schema));
      }
      DataType t = f.dataType();
      boolean ok = source.vector() != null
          ? t instanceof VectorUDT || (t instanceof ArrayType a && a.elementType() instanceof NumericType)
          : t instanceof NumericType || t == DataTypes.StringType;
      if (!ok) {
        throw StagecraftException.user("Cannot score input '%s' with model %s: column '%s' is %s (expected %s)",
            input, model, c, t.simpleString(), source.vector() != null ? "an array of numbers or an ML vector"
                : "a number");
      }
    }
    for (String c : ids) {
      if (field(schema, c) == null) {
        throw StagecraftException.user("Cannot carry id column '%s' of input '%s': no such column (the input has: "
            + "%s)", c, input, names(schema));
      }
    }
  }

  /** The input with the id columns, the reason column and the standardised FLOAT features. */
  static Dataset<Row> apply(Dataset<Row> input, Source source, List<String> ids) {
    List<Column> out = new ArrayList<>();
    for (String id : ids) {
      out.add(col(quote(id)));
    }
    List<Column> reasons = new ArrayList<>();
    List<Column> features = new ArrayList<>();
    Column array = null;
    if (source.vector() != null) {
      String v = source.vector();
      DataType t = field(input.schema(), v).dataType();
      // An ML vector has no SQL form: MLlib's vector_to_array is a JVM UDF (RAPIDS leaves it on the CPU); arrays
      // and plain columns stay GPU-eligible.
      array = t instanceof VectorUDT ? org.apache.spark.ml.functions.vector_to_array(col(quote(v)), "float64")
          : col(quote(v));
      reasons.add(when(array.isNull(), lit("column '" + v + "' is null")));
      reasons.add(when(size(array).notEqual(lit(source.numFeatures())), concat(lit("column '" + v + "' has "),
          size(array).cast("string"), lit(" values (expected " + source.numFeatures() + ")"))));
    }
    if (source.wholeArray()) {
      // The array goes to the scoring task as it is, which standardises each value (in double, as SQL would) and
      // narrows it to a float as it copies it into the batch: one pass over values it reads anyway. Per element
      // (getItem, cast, standardise, array(...) of them all) the projection re-read the row's array and tested its
      // null bit once per feature, and a SQL cast of the whole array boxes every element: each profiled at about
      // 30 % of an MLP's scoring task on a9a, more than the model itself.
      DataType t = field(input.schema(), source.vector()).dataType();
      DataType element = t instanceof ArrayType a ? a.elementType() : DataTypes.DoubleType; // vector_to_array: doubles
      Column values = element == DataTypes.FloatType || element == DataTypes.DoubleType ? array
          : array.cast(DataTypes.createArrayType(DataTypes.DoubleType));
      out.add((reasons.size() == 1 ? reasons.get(0) : coalesce(reasons.toArray(new Column[0]))).as(REASON));
      out.add(values.as(FEATURES));
      return input.select(out.toArray(new Column[0]));
    }
    for (int j = 0; j < source.numFeatures(); j++) {
      String name = source.featureName(j);
      Column raw;
      Column value;
      if (array != null) {
        raw = array.getItem(j);
        value = raw.cast("double");
      } else {
        String c = source.columns().get(j);
        raw = col(quote(c));
        value = field(input.schema(), c).dataType() == DataTypes.StringType
            ? expr("try_cast(" + quote(c) + " AS DOUBLE)") : raw.cast("double");
      }
      Column standardised = value;
      if (source.mean() != null) {
        standardised = value.minus(lit(source.mean()[j])).divide(lit(source.std()[j]));
      }
      features.add(standardised.cast("float"));
      // Nulls and NaN/infinite values are found by the scoring task as it copies the floats into the batch (one
      // test per value it reads anyway); SQL only says what the floats cannot: a string that is not a number.
      if (array == null && field(input.schema(), source.columns().get(j)).dataType() == DataTypes.StringType) {
        reasons.add(when(raw.isNotNull().and(value.isNull()), lit("feature '" + name + "' is not a number")));
      }
    }
    out.add((reasons.isEmpty() ? lit(null).cast("string") : reasons.size() == 1 ? reasons.get(0)
        : coalesce(reasons.toArray(new Column[0]))).as(REASON));
    out.add(org.apache.spark.sql.functions.array(features.toArray(new Column[0])).as(FEATURES));
    return input.select(out.toArray(new Column[0]));
  }

  static String quote(String name) {
    return "`" + name.replace("`", "``") + "`";
  }

  private static StructField field(StructType schema, String name) {
    return Arrays.stream(schema.fields()).filter(f -> f.name().equalsIgnoreCase(name)).findFirst().orElse(null);
  }

  private static String names(StructType schema) {
    return String.join(", ", schema.fieldNames());
  }

  private static String describe(Source s) {
    if (s.vector() != null) {
      return "column '" + s.vector() + "' with " + s.numFeatures() + " values";
    }
    List<String> c = s.columns();
    return c.size() <= 8 ? String.join(", ", c)
        : c.subList(0, 8).stream().collect(Collectors.joining(", ")) + ", … (" + c.size() + " columns)";
  }
}
