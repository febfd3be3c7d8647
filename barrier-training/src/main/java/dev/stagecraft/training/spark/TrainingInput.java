package dev.stagecraft.training.spark;

import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.floor;
import static org.apache.spark.sql.functions.isnan;
import static org.apache.spark.sql.functions.lit;
import static org.apache.spark.sql.functions.max;
import static org.apache.spark.sql.functions.min;
import static org.apache.spark.sql.functions.stddev_samp;
import static org.apache.spark.sql.functions.sum;
import static org.apache.spark.sql.functions.when;

import dev.stagecraft.spi.StepConfig;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.ml.linalg.SQLDataTypes;
import org.apache.spark.ml.linalg.SparseVector;
import org.apache.spark.ml.linalg.Vector;
import org.apache.spark.ml.stat.Summarizer;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.NumericType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The training input of a {@code train} step: which columns are features and label, checked against the schema, and
 * the statistics of one distributed pass (rows, per-feature mean and standard deviation, label range, bad values).
 * Every problem is reported before any barrier stage starts, naming the step and the field.
 */
public final class TrainingInput {
  private TrainingInput() {}

  /**
   * The features: one ML vector column, or numeric columns (in order).
   *
   * @param vector the vector column, or null when the features are numeric columns
   * @param columns the numeric feature columns (empty for a vector column)
   */
  public record Features(String vector, List<String> columns) implements Serializable {
    public Features {
      columns = List.copyOf(columns);
    }

    /** The vector column, if the features come from one. (Optional is not Serializable: tasks carry this.) */
    public Optional<String> vectorColumn() {
      return Optional.ofNullable(vector);
    }
  }

  /** Statistics of the input, from one pass. */
  public record Stats(long rows, double[] mean, double[] std, double labelMin, double labelMax, long fractionalLabels)
      implements Serializable {
    public int numFeatures() {
      return mean.length;
    }

    /** As JSON values, for {@link #fromMap}. */
    public Map<String, Object> toMap() {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("rows", rows);
      m.put("mean", mean);
      m.put("std", std);
      m.put("label_min", labelMin);
      m.put("label_max", labelMax);
      m.put("fractional_labels", fractionalLabels);
      return m;
    }

    /** Statistics written by {@link #toMap} (read back from JSON: numbers and lists of numbers). */
    public static Stats fromMap(Map<?, ?> m) {
      return new Stats(((Number) m.get("rows")).longValue(), doubles(m.get("mean")), doubles(m.get("std")),
          ((Number) m.get("label_min")).doubleValue(), ((Number) m.get("label_max")).doubleValue(),
          ((Number) m.get("fractional_labels")).longValue());
    }

    private static double[] doubles(Object values) {
      if (values instanceof double[] d) {
        return d.clone();
      }
      return ((List<?>) values).stream().mapToDouble(v -> ((Number) v).doubleValue()).toArray();
    }
  }

  /** The features named by {@code features} (or found by default), checked against {@code schema}. */
  public static Features features(StepConfig step, StructType schema, String label, String input) {
    requireNumeric(step, "label", label, schema, input);
    List<String> named = step.stringList("features");
    if (named.isEmpty()) {
      // Default: a column named 'features' if it is a vector (LIBSVM, MLlib), else every numeric column but the label.
      Optional<StructField> vec = field(schema, "features").filter(f -> isVector(f.dataType()));
      if (vec.isPresent()) {
        return new Features(vec.get().name(), List.of());
      }
      List<String> numeric = new ArrayList<>();
      for (StructField f : schema.fields()) {
        if (!f.name().equals(label) && f.dataType() instanceof NumericType) {
          numeric.add(f.name());
        }
      }
      if (numeric.isEmpty()) {
        throw step.invalid("features", "input '" + input + "' has no numeric column besides the label (columns: "
            + names(schema) + "; expected numeric columns or a vector column)");
      }
      return new Features(null, numeric);
    }
    if (named.size() == 1 && field(schema, named.get(0)).filter(f -> isVector(f.dataType())).isPresent()) {
      return new Features(named.get(0), List.of());
    }
    for (String c : named) {
      requireNumeric(step, "features", c, schema, input);
      if (c.equals(label)) {
        throw step.invalid("features", "lists the label column '" + label + "' (expected only input columns)");
      }
    }
    return new Features(null, named);
  }

  /** One distributed pass over the input: counts, per-feature mean/std, label range, non-finite values. */
  public static Stats stats(StepConfig step, Dataset<Row> data, Features features, String label) {
    List<Column> aggs = new ArrayList<>();
    aggs.add(count(lit(1)));
    aggs.add(min(col(label)));
    aggs.add(max(col(label)));
    aggs.add(sum(when(col(label).notEqual(floor(col(label))), 1).otherwise(0)));
    aggs.add(sum(when(col(label).isNull().or(isnan(col(label))).or(col(label).isin(inf(1), inf(-1))), 1)
        .otherwise(0)));
    if (features.vectorColumn().isPresent()) {
      String v = features.vectorColumn().get();
      aggs.add(sum(when(col(v).isNull(), 1).otherwise(0)));
      aggs.add(Summarizer.metrics("mean", "std").summary(col(v)));
    } else {
      for (String c : features.columns()) {
        aggs.add(sum(when(col(c).isNull().or(isnan(col(c))).or(col(c).isin(inf(1), inf(-1))), 1).otherwise(0)));
        aggs.add(org.apache.spark.sql.functions.avg(col(c)));
        aggs.add(stddev_samp(col(c)));
      }
    }
    Row r = data.agg(aggs.get(0), aggs.subList(1, aggs.size()).toArray(Column[]::new)).head();
    long rows = r.getLong(0);
    if (rows == 0) {
      throw step.invalid("input", "has no rows (expected training data)");
    }
    long badLabels = r.isNullAt(4) ? 0 : r.getLong(4);
    if (badLabels > 0) {
      throw step.invalid("label", "column '" + label + "' is null, NaN or infinite in " + badLabels + " of " + rows
          + " rows (expected a finite number in every row; filter or impute them in a sql step)");
    }
    double labelMin = ((Number) r.get(1)).doubleValue();
    double labelMax = ((Number) r.get(2)).doubleValue();
    long fractional = r.getLong(3);
    double[] mean;
    double[] std;
    if (features.vectorColumn().isPresent()) {
      long nulls = r.getLong(5);
      if (nulls > 0) {
        throw step.invalid("features", "vector column '" + features.vectorColumn().get() + "' is null in " + nulls
            + " of " + rows + " rows (expected a vector in every row)");
      }
      Row summary = r.getStruct(6);
      mean = ((Vector) summary.get(0)).toArray();
      std = ((Vector) summary.get(1)).toArray();
      for (int j = 0; j < mean.length; j++) {
        if (!Double.isFinite(mean[j])) {
          throw step.invalid("features", "vector column '" + features.vectorColumn().get() + "' has NaN or infinite "
              + "values at index " + j + " (expected finite numbers; clean them in a sql step)");
        }
      }
    } else {
      int n = features.columns().size();
      mean = new double[n];
      std = new double[n];
      for (int j = 0; j < n; j++) {
        long bad = r.getLong(5 + 3 * j);
        if (bad > 0) {
          throw step.invalid("features", "column '" + features.columns().get(j) + "' is null, NaN or infinite in "
              + bad + " of " + rows + " rows (expected a finite number in every row; filter or impute them in a sql "
              + "step)");
        }
        mean[j] = ((Number) r.get(6 + 3 * j)).doubleValue();
        std[j] = r.isNullAt(7 + 3 * j) ? 0 : ((Number) r.get(7 + 3 * j)).doubleValue();
      }
    }
    for (int j = 0; j < std.length; j++) {
      if (!(std[j] > 0) || !Double.isFinite(std[j])) {
        std[j] = 1; // a constant feature: centred to 0, not divided by 0
      }
    }
    return new Stats(rows, mean, std, labelMin, labelMax, fractional);
  }

  /** Feature names in model order: the columns, or {@code vec[0]…vec[n-1]} for a vector column. */
  public static List<String> featureNames(Features features, int numFeatures) {
    if (features.vectorColumn().isEmpty()) {
      return features.columns();
    }
    List<String> out = new ArrayList<>(numFeatures);
    for (int j = 0; j < numFeatures; j++) {
      out.add(features.vectorColumn().get() + "[" + j + "]");
    }
    return out;
  }

  /**
   * Writes row {@code r}'s standardised features into {@code dst[offset…]}: fields 0 = label, then the feature
   * vector (one field) or the feature columns, as {@link #select} lays them out.
   */
  public static void standardise(Row r, Features features, double[] mean, double[] std, float[] dst, int offset) {
    int n = mean.length;
    if (features.vectorColumn().isPresent()) {
      Vector v = (Vector) r.get(1);
      if (v.size() != n) {
        throw new IllegalArgumentException("Invalid feature vector of size " + v.size() + " (expected " + n + ")");
      }
      for (int j = 0; j < n; j++) {
        dst[offset + j] = (float) (-mean[j] / std[j]);
      }
      if (v instanceof SparseVector sv) {
        int[] idx = sv.indices();
        double[] val = sv.values();
        for (int k = 0; k < idx.length; k++) {
          int j = idx[k];
          dst[offset + j] = (float) ((val[k] - mean[j]) / std[j]);
        }
      } else {
        double[] val = v.toArray();
        for (int j = 0; j < n; j++) {
          dst[offset + j] = (float) ((val[j] - mean[j]) / std[j]);
        }
      }
    } else {
      for (int j = 0; j < n; j++) {
        dst[offset + j] = (float) ((((Number) r.get(1 + j)).doubleValue() - mean[j]) / std[j]);
      }
    }
  }

  /** The input reduced to what training reads: label first, then the features. */
  public static Dataset<Row> select(Dataset<Row> data, Features features, String label) {
    List<Column> cols = new ArrayList<>();
    cols.add(col(label).cast("double"));
    if (features.vectorColumn().isPresent()) {
      cols.add(col(features.vectorColumn().get()));
    } else {
      features.columns().forEach(c -> cols.add(col(c).cast("double")));
    }
    return data.select(cols.toArray(Column[]::new));
  }

  private static void requireNumeric(StepConfig step, String field, String column, StructType schema, String input) {
    Optional<StructField> f = field(schema, column);
    if (f.isEmpty()) {
      throw step.invalid(field, "column '" + column + "' is not in input '" + input + "' (columns: " + names(schema)
          + ")");
    }
    if (!(f.get().dataType() instanceof NumericType)) {
      throw step.invalid(field, "column '" + column + "' is " + f.get().dataType().simpleString()
          + " (expected a numeric column" + (field.equals("features") ? " or one vector column" : "") + ")");
    }
  }

  private static Optional<StructField> field(StructType schema, String name) {
    return Arrays.stream(schema.fields()).filter(f -> f.name().equals(name)).findFirst();
  }

  private static boolean isVector(DataType t) {
    return t.equals(SQLDataTypes.VectorType());
  }

  private static String names(StructType schema) {
    return String.join(", ", schema.fieldNames());
  }

  private static Column inf(int sign) {
    return lit(sign * Double.POSITIVE_INFINITY);
  }
}
