package dev.stagecraft.training.spark;

import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Task;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;

/**
 * Metrics of trained parameters on a dataset, computed where the data is in one pass (one model per partition, one
 * {@link Summary} per partition, merged in a tree): loss and accuracy, plus AUC (binary) or RMSE (regression). Nothing
 * is cached and nothing is shuffled: a step that holds GPU executors holds them for one short job per dataset.
 */
final class Evaluator {
  /** Rows scored per call of the model. */
  private static final int BATCH = 4096;

  private Evaluator() {}

  static Map<String, Double> evaluate(Dataset<Row> selected, TrainingInput.Features features, double[] mean,
      double[] std, Map<String, Object> spec, Task task, int numClasses, float[] params, String prefix) {
    Summary s = selected.javaRDD().mapPartitions(new Predict(features, mean, std, spec, task, numClasses, params))
        .treeReduce(Summary::merge, 2);
    return metrics(s, task, prefix);
  }

  /** Loss and accuracy (or RMSE), plus AUC for a binary task, from a summary, each name prefixed. */
  static Map<String, Double> metrics(Summary s, Task task, String prefix) {
    Map<String, Double> m = new LinkedHashMap<>();
    m.put(prefix + "loss", s.loss / s.rows);
    if (task == Task.REGRESSION) {
      m.put(prefix + "rmse", Math.sqrt(s.scored / s.rows));
    } else {
      m.put(prefix + "accuracy", s.scored / s.rows);
    }
    if (task == Task.BINARY) {
      m.put(prefix + "auc", s.auc());
    }
    return m;
  }

  /**
   * What a partition contributes: rows, summed loss, summed score (correct predictions, or squared errors), and for
   * binary tasks the predicted probabilities of each class counted in {@link #BINS} equal-width bins. AUC from the
   * bins counts a positive and a negative in the same bin as half ordered, as for tied scores; with 2^16 bins that
   * differs from the exact AUC by at most the fraction of pairs that share a bin (bins 1.5e-5 wide).
   */
  static final class Summary implements Serializable {
    private static final long serialVersionUID = 1L;
    static final int BINS = 1 << 16;
    long rows;
    double loss;
    double scored;
    final long[] positives;
    final long[] negatives;

    Summary(boolean binary) {
      positives = binary ? new long[BINS] : null;
      negatives = binary ? new long[BINS] : null;
    }

    void add(double lossValue, double score, double probability, boolean positive) {
      rows++;
      loss += lossValue;
      scored += score;
      if (positives != null) {
        int bin = (int) Math.min(BINS - 1, Math.max(0, Math.floor(probability * BINS)));
        (positive ? positives : negatives)[bin]++;
      }
    }

    Summary merge(Summary o) {
      rows += o.rows;
      loss += o.loss;
      scored += o.scored;
      if (positives != null) {
        for (int i = 0; i < BINS; i++) {
          positives[i] += o.positives[i];
          negatives[i] += o.negatives[i];
        }
      }
      return this;
    }

    /** Area under the ROC curve: the chance that a random positive scores above a random negative (ties: half). */
    double auc() {
      double pairs = 0;
      long pos = 0;
      long neg = 0;
      long negBelow = 0;
      for (int i = 0; i < BINS; i++) {
        pairs += positives[i] * (negBelow + negatives[i] / 2.0);
        negBelow += negatives[i];
        pos += positives[i];
        neg += negatives[i];
      }
      return pos == 0 || neg == 0 ? Double.NaN : pairs / ((double) pos * neg);
    }
  }

  /**
   * The summary of a worker's own rows, already standardised in its buffers, under {@code params}: the training
   * metrics computed inside the barrier task, where the data is, with no job of their own.
   */
  static Summary summarise(FlatModel model, float[] params, dev.stagecraft.training.loop.WorkerLoop.LocalData data,
      Task task, int numClasses) {
    Summary summary = new Summary(task == Task.BINARY);
    int nf = data.numFeatures();
    model.setParameters(params);
    FloatBuffer xs = ByteBuffer.allocateDirect(BATCH * nf * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
    for (int from = 0; from < data.rows(); from += BATCH) {
      int n = Math.min(BATCH, data.rows() - from);
      xs.clear();
      xs.put(data.features(), from * nf, n * nf);
      xs.flip();
      float[] p = model.predict(xs, n);
      for (int i = 0; i < n; i++) {
        add(summary, task, numClasses, p, i, data.labels()[from + i]);
      }
    }
    return summary;
  }

  /** Adds row {@code i} of the predictions {@code p} (rows × outputs) with its label to {@code s}. */
  static void add(Summary s, Task task, int numClasses, float[] p, int i, float label) {
    double eps = 1e-7;
    switch (task) {
      case BINARY: {
        double q = Math.min(1 - eps, Math.max(eps, p[i]));
        double loss = label > 0.5 ? -Math.log(q) : -Math.log(1 - q);
        s.add(loss, (q >= 0.5) == (label > 0.5) ? 1 : 0, p[i], label > 0.5);
        break;
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
        s.add(-Math.log(q), best == (int) label ? 1 : 0, p[i * k + best], false);
        break;
      }
      default: {
        double err = p[i] - label;
        s.add(err * err, err * err, p[i], false);
      }
    }
  }

  private static final class Predict
      implements org.apache.spark.api.java.function.FlatMapFunction<Iterator<Row>, Summary>, Serializable {
    private static final long serialVersionUID = 1L;
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
    public Iterator<Summary> call(Iterator<Row> it) {
      int nf = mean.length;
      Summary summary = new Summary(task == Task.BINARY);
      if (!it.hasNext()) {
        return List.of(summary).iterator();
      }
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
              add(summary, task, numClasses, p, i, y[i]);
            }
            n = 0;
          }
          if (!more) {
            break;
          }
        }
      }
      return List.of(summary).iterator();
    }
  }
}
