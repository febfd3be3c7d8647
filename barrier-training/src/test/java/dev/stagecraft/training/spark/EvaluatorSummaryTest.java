package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.Random;
import org.junit.jupiter.api.Test;

class EvaluatorSummaryTest {

  /** The exact AUC by comparing every positive with every negative (ties count half). */
  private static double exactAuc(double[] p, boolean[] positive) {
    double pairs = 0;
    long pos = 0;
    long neg = 0;
    for (int i = 0; i < p.length; i++) {
      if (!positive[i]) {
        neg++;
        continue;
      }
      pos++;
      for (int j = 0; j < p.length; j++) {
        if (!positive[j]) {
          pairs += p[i] > p[j] ? 1 : p[i] == p[j] ? 0.5 : 0;
        }
      }
    }
    return pairs / (pos * (double) neg);
  }

  @Test
  void binnedAucMatchesTheExactAucAcrossMergedPartitions() {
    Random rnd = new Random(7);
    int n = 3000;
    double[] p = new double[n];
    boolean[] y = new boolean[n];
    Evaluator.Summary a = new Evaluator.Summary(true);
    Evaluator.Summary b = new Evaluator.Summary(true);
    for (int i = 0; i < n; i++) {
      y[i] = rnd.nextDouble() < 0.3;
      // Overlapping classes, many scores near 0 and 1 as a trained logistic model gives.
      double logit = rnd.nextGaussian() * 3 + (y[i] ? 1.5 : -1.5);
      p[i] = 1 / (1 + Math.exp(-logit));
      (i % 2 == 0 ? a : b).add(0.1, y[i] == p[i] >= 0.5 ? 1 : 0, p[i], y[i]);
    }
    Evaluator.Summary s = a.merge(b);
    assertThat(s.rows).isEqualTo(n);
    assertThat(s.loss).isCloseTo(0.1 * n, within(1e-6));
    double exact = exactAuc(p, y);
    assertThat(exact).isBetween(0.6, 0.95);
    assertThat(s.auc()).isCloseTo(exact, within(1e-4));
  }

  @Test
  void tiedScoresCountHalfAndOneClassHasNoAuc() {
    Evaluator.Summary s = new Evaluator.Summary(true);
    s.add(0, 1, 0.9, true);
    s.add(0, 1, 0.2, false);
    s.add(0, 0, 0.5, true);
    s.add(0, 0, 0.5, false);
    // Pairs (pos, neg): (0.9,0.2)=1, (0.9,0.5)=1, (0.5,0.2)=1, (0.5,0.5)=0.5 → 3.5 / 4.
    assertThat(s.auc()).isEqualTo(3.5 / 4);
    Evaluator.Summary onlyPositives = new Evaluator.Summary(true);
    onlyPositives.add(0, 1, 0.7, true);
    assertThat(onlyPositives.auc()).isNaN();
    Evaluator.Summary regression = new Evaluator.Summary(false);
    regression.add(4, 4, 3, false);
    Evaluator.Summary other = new Evaluator.Summary(false);
    other.add(1, 1, 2, false);
    regression.merge(other);
    assertThat(regression.rows).isEqualTo(2);
    assertThat(regression.scored).isEqualTo(5);
  }

  @Test
  void aWorkersSummaryOfItsOwnRowsCoversEveryBatchUnderTheGivenParameters() {
    // 5,000 rows: two batches. With every parameter 0 a logistic model says 0.5 for every row: loss ln 2 each,
    // "positive" for all (so accuracy = the positive share), and every pair tied (AUC 0.5).
    int rows = 5000;
    int nf = 3;
    float[] x = new float[rows * nf];
    float[] y = new float[rows];
    Random rnd = new Random(3);
    int positives = 0;
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < nf; j++) {
        x[r * nf + j] = (float) rnd.nextGaussian();
      }
      y[r] = r % 10 < 3 ? 1 : 0;
      positives += (int) y[r];
    }
    var data = new dev.stagecraft.training.loop.WorkerLoop.LocalData(x, y, rows, nf);
    try (var model = dev.stagecraft.training.model.FlatModel.create(
        dev.stagecraft.training.model.ModelSpec.fromMap(java.util.Map.of("type", "logistic")),
        dev.stagecraft.training.model.Task.BINARY, nf, 2, ai.djl.Device.cpu())) {
      Evaluator.Summary s = Evaluator.summarise(model, new float[model.numParameters()], data,
          dev.stagecraft.training.model.Task.BINARY, 2);
      var m = Evaluator.metrics(s, dev.stagecraft.training.model.Task.BINARY, "train_");
      assertThat(s.rows).isEqualTo(rows);
      assertThat(m.get("train_loss")).isCloseTo(Math.log(2), within(1e-6));
      assertThat(m.get("train_accuracy")).isCloseTo(positives / (double) rows, within(1e-12));
      assertThat(m.get("train_auc")).isCloseTo(0.5, within(1e-12));
    }
  }
}
