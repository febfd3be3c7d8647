package dev.stagecraft.training.spark;

import dev.stagecraft.inference.model.Devices;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Task;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.mllib.evaluation.BinaryClassificationMetrics;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import scala.Tuple2;

/**
 * Metrics of trained parameters on a dataset, computed where the data is (one model per partition): loss and
 * accuracy, plus AUC (binary) or RMSE (regression).
 */
final class Evaluator {
  private Evaluator() {}

  /** Per-row prediction: [label, loss, correct (0/1 or squared error), score (p(1) for binary)]. */
  static Map<String, Double> evaluate(Dataset<Row> selected, TrainingInput.Features features, double[] mean,
      double[] std, Map<String, Object> spec, Task task, int numClasses, float[] params, String prefix) {
    JavaRDD<double[]> rows = selected.javaRDD().mapPartitions(new Predict(features, mean, std, spec, task, numClasses,
        params)).cache();
    try {
      double[] sums = rows.map(r -> new double[] {1, r[1], r[2]}).fold(new double[3], (a, b) -> {
        double[] c = new double[3];
        for (int i = 0; i < 3; i++) {
          c[i] = a[i] + b[i];
        }
        return c;
      });
      Map<String, Double> m = new LinkedHashMap<>();
      double n = sums[0];
      m.put(prefix + "loss", sums[1] / n);
      if (task == Task.REGRESSION) {
        m.put(prefix + "rmse", Math.sqrt(sums[2] / n));
      } else {
        m.put(prefix + "accuracy", sums[2] / n);
      }
      if (task == Task.BINARY) {
        JavaRDD<Tuple2<Object, Object>> scores = rows.map(r -> new Tuple2<>(r[3], r[0]));
        BinaryClassificationMetrics bcm = new BinaryClassificationMetrics(scores.rdd());
        m.put(prefix + "auc", bcm.areaUnderROC());
        bcm.unpersist();
      }
      return m;
    } finally {
      rows.unpersist(false);
    }
  }

  private static final class Predict
      implements org.apache.spark.api.java.function.FlatMapFunction<Iterator<Row>, double[]>, Serializable {
    private static final long serialVersionUID = 1L;
    private static final int BATCH = 4096;
    private final TrainingInput.Features features;
    private final double[] mean;
    private final double[] std;
    private final Map<String, Object> spec;
    private final Task task;
    private final int numClasses;
    private final float[] params;

    Predict(TrainingInput.Features features, double[] mean, double[] std, Map<String, Object> spec, Task task,
        int numClasses, float[] params) {
      this.features = features;
      this.mean = mean;
      this.std = std;
      this.spec = spec;
      this.task = task;
      this.numClasses = numClasses;
      this.params = params;
    }

    @Override
    public Iterator<double[]> call(Iterator<Row> it) {
      int nf = mean.length;
      List<double[]> out = new ArrayList<>();
      try (FlatModel model = FlatModel.create(ModelSpec.fromMap(spec), task, nf, numClasses,
          Devices.select(Optional.empty()))) {
        model.setParameters(params);
        float[] x = new float[BATCH * nf];
        float[] y = new float[BATCH];
        FloatBuffer xs = ByteBuffer.allocateDirect(BATCH * nf * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
        int n = 0;
        while (true) {
          boolean more = it.hasNext();
          if (more) {
            Row r = it.next();
            y[n] = (float) r.getDouble(0);
            TrainingInput.standardise(r, features, mean, std, x, n * nf);
            n++;
          }
          if (n == BATCH || (!more && n > 0)) {
            xs.clear();
            xs.put(x, 0, n * nf);
            xs.flip();
            float[] p = model.predict(xs, n);
            for (int i = 0; i < n; i++) {
              out.add(row(p, i, y[i]));
            }
            n = 0;
          }
          if (!more) {
            break;
          }
        }
      }
      return out.iterator();
    }

    private double[] row(float[] p, int i, float label) {
      double eps = 1e-7;
      switch (task) {
        case BINARY: {
          double q = Math.min(1 - eps, Math.max(eps, p[i]));
          double loss = label > 0.5 ? -Math.log(q) : -Math.log(1 - q);
          double correct = (q >= 0.5) == (label > 0.5) ? 1 : 0;
          return new double[] {label, loss, correct, p[i]};
        }
        case MULTICLASS: {
          int k = numClasses;
          int best = 0;
          for (int c = 1; c < k; c++) {
            if (p[i * k + c] > p[i * k + best]) {
              best = c;
            }
          }
          double q = Math.max(eps, p[i * k + (int) label]);
          return new double[] {label, -Math.log(q), best == (int) label ? 1 : 0, p[i * k + best]};
        }
        default: {
          double err = p[i] - label;
          return new double[] {label, err * err, err * err, p[i]};
        }
      }
    }
  }
}
