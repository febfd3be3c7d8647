package dev.stagecraft.inference.spark;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.inference.score.Scorer;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * How a model's raw outputs become columns.
 *
 * <ul>
 *   <li>{@code binary} bundle: {@code prediction} (the label of the likelier class, p ≥ 0.5 → class 1) and
 *       {@code probability} (p of class 1), both DOUBLE;
 *   <li>{@code multiclass} bundle: {@code prediction} (label of the most probable class) and {@code probability}
 *       (ARRAY&lt;DOUBLE&gt;, one per class);
 *   <li>{@code regression} bundle: {@code prediction};
 *   <li>ONNX: one column per model output, named as in the model: DOUBLE for {@code [N]}/{@code [N, 1]} outputs,
 *       ARRAY&lt;DOUBLE&gt; for wider ones.
 * </ul>
 */
final class OutputHead implements Serializable {
  private static final long serialVersionUID = 1L;

  enum Kind {
    BINARY,
    MULTICLASS,
    REGRESSION,
    RAW
  }

  private final Kind kind;
  private final double[] labels;
  private final List<String> names;
  private final int[] widths;

  private OutputHead(Kind kind, double[] labels, List<String> names, int[] widths) {
    this.kind = requireNonNull(kind, "kind is null");
    this.labels = labels.clone();
    this.names = List.copyOf(names);
    this.widths = widths.clone();
  }

  /**
   * @param prediction the name of the prediction column
   * @param probability the name of the probability column
   */
  static OutputHead forBundle(String task, List<Double> labels, int numOutputs, String prediction,
      String probability) {
    double[] l = labels.stream().mapToDouble(Double::doubleValue).toArray();
    return switch (task) {
      case "binary" -> new OutputHead(Kind.BINARY, l.length == 2 ? l : new double[] {0, 1},
          List.of(prediction, probability), new int[] {1, 1});
      case "multiclass" -> new OutputHead(Kind.MULTICLASS, l, List.of(prediction, probability),
          new int[] {1, numOutputs});
      default -> new OutputHead(Kind.REGRESSION, new double[0], List.of(prediction), new int[] {1});
    };
  }

  static OutputHead forOnnx(List<Scorer.Output> outputs) {
    List<String> names = new ArrayList<>();
    int[] widths = new int[outputs.size()];
    for (int i = 0; i < widths.length; i++) {
      names.add(outputs.get(i).name());
      widths[i] = outputs.get(i).width();
    }
    return new OutputHead(Kind.RAW, new double[0], names, widths);
  }

  /** The output column names, in order. */
  List<String> names() {
    return names;
  }

  /** The id columns, then the output columns. */
  StructType schema(StructType ids) {
    StructType s = ids;
    for (int i = 0; i < names.size(); i++) {
      s = s.add(new StructField(names.get(i), widths[i] == 1 ? DataTypes.DoubleType
          : DataTypes.createArrayType(DataTypes.DoubleType, false), true, org.apache.spark.sql.types.Metadata.empty()));
    }
    return s;
  }

  /** Row {@code r} of a scored batch; {@code outputs} are the scorer's, per output {@code rows × width}. */
  InternalRow scoredRow(Object[] ids, float[][] outputs, int r) {
    Object[] v = new Object[ids.length + names.size()];
    System.arraycopy(ids, 0, v, 0, ids.length);
    int at = ids.length;
    switch (kind) {
      case BINARY -> {
        v[at] = prediction(outputs, r);
        v[at + 1] = (double) outputs[0][r];
      }
      case MULTICLASS -> {
        int k = widths[1];
        v[at] = prediction(outputs, r);
        v[at + 1] = ScoringTask.doubles(outputs[0], r * k, k);
      }
      case REGRESSION -> v[at] = (double) outputs[0][r];
      case RAW -> {
        for (int o = 0; o < widths.length; o++) {
          int w = widths[o];
          v[at + o] = w == 1 ? (Object) (double) outputs[o][r] : ScoringTask.doubles(outputs[o], r * w, w);
        }
      }
    }
    return ScoringTask.row(v);
  }

  /**
   * Whether the predicted class in {@code scored} (a row of {@link #scoredRow} after {@code numIds} id columns) equals
   * {@code label} (an id column's internal value: a number or a decimal); always false for a null label or a head
   * without classes.
   */
  boolean predictionEquals(Object label, InternalRow scored, int numIds) {
    if ((kind != Kind.BINARY && kind != Kind.MULTICLASS) || label == null) {
      return false;
    }
    double l = label instanceof org.apache.spark.sql.types.Decimal d ? d.toDouble() : ((Number) label).doubleValue();
    return scored.getDouble(numIds) == l;
  }

  /** The predicted class label of row {@code r} of a classifier's outputs. */
  private double prediction(float[][] outputs, int r) {
    if (kind == Kind.BINARY) {
      return outputs[0][r] >= 0.5 ? labels[1] : labels[0];
    }
    int k = widths[1];
    int best = 0;
    for (int c = 1; c < k; c++) {
      if (outputs[0][r * k + c] > outputs[0][r * k + best]) {
        best = c;
      }
    }
    return best < labels.length ? labels[best] : best;
  }
}
