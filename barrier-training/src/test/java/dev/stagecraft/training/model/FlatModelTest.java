package dev.stagecraft.training.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import ai.djl.Device;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

class FlatModelTest {

  static ModelSpec spec(ModelSpec.Type type, List<Integer> hidden, ModelSpec.Activation activation, double dropout,
      ModelSpec.OptimizerName optimizer, double lr, double momentum, long seed) {
    return new ModelSpec(type, hidden, activation, dropout, 1, 64, optimizer, lr, momentum, seed);
  }

  static ModelSpec logistic(ModelSpec.OptimizerName optimizer, double lr, long seed) {
    return spec(ModelSpec.Type.LOGISTIC, List.of(), ModelSpec.Activation.RELU, 0, optimizer, lr, 0.9, seed);
  }

  static ModelSpec mlp(List<Integer> hidden, ModelSpec.Activation activation, double dropout, long seed) {
    return spec(ModelSpec.Type.MLP, hidden, activation, dropout, ModelSpec.OptimizerName.ADAM, 0.01, 0.9, seed);
  }

  // ---- gradients ------------------------------------------------------------------------------------------------

  @Test
  void logisticGradientMatchesTheAnalyticGradient() {
    Datasets d = Datasets.random(1, 32, 7, Task.BINARY, 2);
    try (FlatModel model = FlatModel.create(logistic(ModelSpec.OptimizerName.SGD, 0.1, 3), Task.BINARY, 7, 2,
        Device.cpu())) {
      float[] p = model.parameters();
      assertThat(p).hasSize(8); // weight [1 × 7], then bias
      p[7] = 0.3f;
      model.setParameters(p);
      float loss = model.computeGradients(d.featureRows(0, 32), d.labelRows(0, 32), 32);
      float[] g = model.gradients();

      double[] expected = new double[8];
      double expectedLoss = 0;
      for (int r = 0; r < 32; r++) {
        double z = p[7];
        for (int j = 0; j < 7; j++) {
          z += p[j] * d.features()[r * 7 + j];
        }
        double err = 1 / (1 + Math.exp(-z)) - d.labels()[r];
        for (int j = 0; j < 7; j++) {
          expected[j] += err * d.features()[r * 7 + j] / 32;
        }
        expected[7] += err / 32;
        expectedLoss += (Math.log1p(Math.exp(-Math.abs(z))) + Math.max(z, 0) - z * d.labels()[r]) / 32;
      }
      assertThat((double) loss).isCloseTo(expectedLoss, within(1e-5));
      for (int i = 0; i < 8; i++) {
        assertThat((double) g[i]).as("gradient %d", i).isCloseTo(expected[i], within(1e-5));
      }
    }
  }

  @Test
  void linearRegressionGradientMatchesTheAnalyticGradient() {
    Datasets d = Datasets.random(2, 20, 3, Task.REGRESSION, 0);
    ModelSpec spec = spec(ModelSpec.Type.LINEAR, List.of(), ModelSpec.Activation.RELU, 0, ModelSpec.OptimizerName.SGD,
        0.1, 0.9, 5);
    try (FlatModel model = FlatModel.create(spec, Task.REGRESSION, 3, 0, Device.cpu())) {
      float[] p = {0.5f, -1f, 2f, 0.25f};
      model.setParameters(p);
      float loss = model.computeGradients(d.featureRows(0, 20), d.labelRows(0, 20), 20);
      double[] expected = new double[4];
      double expectedLoss = 0;
      for (int r = 0; r < 20; r++) {
        double yHat = p[3];
        for (int j = 0; j < 3; j++) {
          yHat += p[j] * d.features()[r * 3 + j];
        }
        double err = yHat - d.labels()[r];
        expectedLoss += err * err / 20;
        for (int j = 0; j < 3; j++) {
          expected[j] += 2 * err * d.features()[r * 3 + j] / 20;
        }
        expected[3] += 2 * err / 20;
      }
      assertThat((double) loss).isCloseTo(expectedLoss, within(1e-4));
      for (int i = 0; i < 4; i++) {
        assertThat((double) model.gradients()[i]).as("gradient %d", i).isCloseTo(expected[i], within(1e-4));
      }
    }
  }

  @Test
  void logisticGradientsMatchFiniteDifferences() {
    try (FlatModel binary = FlatModel.create(logistic(ModelSpec.OptimizerName.ADAM, 0.1, 11), Task.BINARY, 6, 2,
            Device.cpu());
        FlatModel multiclass = FlatModel.create(logistic(ModelSpec.OptimizerName.ADAM, 0.1, 12), Task.MULTICLASS, 6,
            3, Device.cpu())) {
      checkByFiniteDifferences(binary, Datasets.random(3, 24, 6, Task.BINARY, 2));
      checkByFiniteDifferences(multiclass, Datasets.random(4, 24, 6, Task.MULTICLASS, 3));
    }
  }

  @Test
  void mlpGradientsMatchFiniteDifferences() {
    // Smooth activations only: a finite difference across a ReLU kink is not a derivative.
    try (FlatModel tanh = FlatModel.create(mlp(List.of(5, 4), ModelSpec.Activation.TANH, 0, 21), Task.MULTICLASS, 6,
            3, Device.cpu());
        FlatModel sigmoid = FlatModel.create(mlp(List.of(6), ModelSpec.Activation.SIGMOID, 0, 22), Task.REGRESSION,
            4, 0, Device.cpu())) {
      assertThat(tanh.numParameters()).isEqualTo(6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
      checkByFiniteDifferences(tanh, Datasets.random(5, 16, 6, Task.MULTICLASS, 3));
      checkByFiniteDifferences(sigmoid, Datasets.random(6, 16, 4, Task.REGRESSION, 0));
    }
  }

  /**
   * Central differences of the float32 loss with h = 1e-2: truncation error is h²/6·f''' (~1e-5 here) and rounding
   * noise about 1e-7 / 2h (~1e-5), so 2e-4 + 1% is loose enough for float32 yet far below the error of a wrong
   * gradient (a missing 1/rows, a sign, a dropped layer).
   */
  private static void checkByFiniteDifferences(FlatModel model, Datasets d) {
    int rows = d.rows();
    float[] p = model.parameters();
    model.computeGradients(d.featureRows(0, rows), d.labelRows(0, rows), rows);
    float[] g = model.gradients().clone();
    double norm = 0;
    double worst = 0;
    float h = 1e-2f;
    for (int i = 0; i < p.length; i++) {
      float original = p[i];
      p[i] = original + h;
      model.setParameters(p);
      double plus = model.computeLoss(d.featureRows(0, rows), d.labelRows(0, rows), rows);
      p[i] = original - h;
      model.setParameters(p);
      double minus = model.computeLoss(d.featureRows(0, rows), d.labelRows(0, rows), rows);
      p[i] = original;
      double numeric = (plus - minus) / (2 * h);
      assertThat((double) g[i]).as("gradient %d of %d", i, p.length).isCloseTo(numeric, within(2e-4 + 1e-2 * Math.abs(numeric)));
      norm += numeric * numeric;
      worst = Math.max(worst, Math.abs(g[i] - numeric));
    }
    model.setParameters(p);
    LoggerFactory.getLogger(FlatModelTest.class).info(
        "Finite differences, {} {} {}: largest |analytic - numeric| {} over {} parameters",
        model.spec().type().label(), model.spec().hidden(), model.task().label(), String.format("%.2e", worst),
        p.length);
    assertThat(Math.sqrt(norm)).as("gradient norm").isGreaterThan(1e-2);
  }

  @Test
  void gradientsAreReplacedNotAccumulated() {
    Datasets d = Datasets.random(7, 16, 5, Task.BINARY, 2);
    try (FlatModel model = FlatModel.create(mlp(List.of(4), ModelSpec.Activation.RELU, 0, 1), Task.BINARY, 5, 2,
        Device.cpu())) {
      model.computeGradients(d.featureRows(0, 16), d.labelRows(0, 16), 16);
      float[] first = model.gradients().clone();
      model.computeGradients(d.featureRows(0, 16), d.labelRows(0, 16), 16);
      assertThat(model.gradients()).containsExactly(first);
      assertThat(model.trainingSteps()).isEqualTo(2);
    }
  }

  // ---- learning -------------------------------------------------------------------------------------------------

  @Test
  void logisticSeparatesSeparableDataWithSgdAndAdam() {
    Datasets train = Datasets.separable(31, 2000, 10);
    Datasets test = Datasets.separable(31, 4000, 10); // same hyperplane, a superset of rows
    for (ModelSpec spec : List.of(logistic(ModelSpec.OptimizerName.SGD, 0.5, 1),
        logistic(ModelSpec.OptimizerName.ADAM, 0.05, 1))) {
      try (FlatModel model = FlatModel.create(spec, Task.BINARY, 10, 2, Device.cpu())) {
        double before = accuracy(model, test, 2000, 2000);
        train(model, Optimizer.create(spec, model.numParameters()), train, 3, 64);
        double after = accuracy(model, test, 2000, 2000); // rows 2000.. were not trained on
        assertThat(after).as("%s: accuracy before %.3f", spec.optimizer(), before).isGreaterThan(0.95);
      }
    }
  }

  @Test
  void multiclassLogisticLearnsThreeBlobs() {
    Datasets data = Datasets.blobs(41, 3000);
    ModelSpec spec = logistic(ModelSpec.OptimizerName.ADAM, 0.05, 2);
    try (FlatModel model = FlatModel.create(spec, Task.MULTICLASS, 2, 3, Device.cpu())) {
      float firstLoss = model.computeLoss(data.featureRows(2000, 1000), data.labelRows(2000, 1000), 1000);
      train(model, Optimizer.create(spec, model.numParameters()), new Datasets(
          Arrays.copyOf(data.features(), 4000), Arrays.copyOf(data.labels(), 2000), 2000, 2), 5, 64);
      float lastLoss = model.computeLoss(data.featureRows(2000, 1000), data.labelRows(2000, 1000), 1000);
      float[] probabilities = model.predict(data.featureRows(2000, 1), 1);
      assertThat(probabilities).hasSize(3);
      assertThat((double) (probabilities[0] + probabilities[1] + probabilities[2])).isCloseTo(1.0, within(1e-5));
      assertThat(accuracy(model, data, 2000, 1000)).as("loss %.3f -> %.3f", firstLoss, lastLoss).isGreaterThan(0.93);
      assertThat(lastLoss).isLessThan(firstLoss / 3);
    }
  }

  @Test
  void mlpLearnsXorWhichNoLinearModelCan() {
    Datasets data = Datasets.xor(51, 3000);
    ModelSpec spec = spec(ModelSpec.Type.MLP, List.of(16), ModelSpec.Activation.RELU, 0, ModelSpec.OptimizerName.ADAM,
        0.02, 0.9, 3);
    Datasets train = new Datasets(Arrays.copyOf(data.features(), 4000), Arrays.copyOf(data.labels(), 2000), 2000, 2);
    try (FlatModel model = FlatModel.create(spec, Task.BINARY, 2, 2, Device.cpu())) {
      train(model, Optimizer.create(spec, model.numParameters()), train, 20, 32);
      assertThat(accuracy(model, data, 2000, 1000)).isGreaterThan(0.9);
    }
  }

  @Test
  void linearRegressionRecoversTheLine() {
    Datasets data = Datasets.line(61, 512);
    for (ModelSpec.OptimizerName optimizer : ModelSpec.OptimizerName.values()) {
      ModelSpec spec = spec(ModelSpec.Type.LINEAR, List.of(), ModelSpec.Activation.RELU, 0, optimizer,
          optimizer == ModelSpec.OptimizerName.SGD ? 0.1 : 0.05, 0.9, 4);
      try (FlatModel model = FlatModel.create(spec, Task.REGRESSION, 1, 0, Device.cpu())) {
        float loss = train(model, Optimizer.create(spec, model.numParameters()), data, 40, 32);
        float[] p = model.parameters(); // [w, b]
        assertThat(p[0]).as("%s slope (last loss %s)", optimizer, loss).isCloseTo(2f, within(0.01f));
        assertThat(p[1]).as("%s intercept", optimizer).isCloseTo(1f, within(0.01f));
        float[] predicted = model.predict(FloatBuffer.wrap(new float[] {0.5f, -1f}), 2);
        assertThat(predicted[0]).isCloseTo(2f, within(0.02f));
        assertThat(predicted[1]).isCloseTo(-1f, within(0.02f));
      }
    }
  }

  // ---- parameters -----------------------------------------------------------------------------------------------

  @Test
  void sameSeedGivesIdenticalInitialParameters() {
    ModelSpec spec = mlp(List.of(8, 4), ModelSpec.Activation.RELU, 0, 99);
    try (FlatModel a = FlatModel.create(spec, Task.MULTICLASS, 5, 3, Device.cpu());
        FlatModel other = FlatModel.create(mlp(List.of(8, 4), ModelSpec.Activation.RELU, 0, 100), Task.MULTICLASS, 5,
            3, Device.cpu());
        FlatModel b = FlatModel.create(spec, Task.MULTICLASS, 5, 3, Device.cpu())) {
      assertThat(a.parameters()).containsExactly(b.parameters());
      assertThat(a.parameters()).isNotEqualTo(other.parameters());
      float[] p = a.parameters();
      // Glorot-uniform weights of the first layer are within ±sqrt(6 / (5 + 8)); its biases are 0.
      for (int i = 0; i < 40; i++) {
        assertThat(Math.abs(p[i])).isLessThanOrEqualTo((float) Math.sqrt(6.0 / 13));
      }
      assertThat(Arrays.copyOfRange(p, 40, 48)).containsOnly(0f);
      assertThat(new java.util.HashSet<>(floats(Arrays.copyOf(p, 40)))).hasSizeGreaterThan(35);
    }
  }

  @Test
  void parametersSaveAndLoadExactly() throws Exception {
    Datasets d = Datasets.random(8, 64, 5, Task.MULTICLASS, 3);
    ModelSpec spec = mlp(List.of(6), ModelSpec.Activation.TANH, 0, 5);
    try (FlatModel a = FlatModel.create(spec, Task.MULTICLASS, 5, 3, Device.cpu());
        FlatModel b = FlatModel.create(mlp(List.of(6), ModelSpec.Activation.TANH, 0, 6), Task.MULTICLASS, 5, 3,
            Device.cpu())) {
      train(a, Optimizer.create(spec, a.numParameters()), d, 2, 16);
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      a.saveParameters(out);
      b.loadParameters(new ByteArrayInputStream(out.toByteArray()));
      assertThat(bits(b.parameters())).containsExactly(bits(a.parameters()));
      assertThat(b.predict(d.featureRows(0, 64), 64)).containsExactly(a.predict(d.featureRows(0, 64), 64));

      try (FlatModel small = FlatModel.create(logistic(ModelSpec.OptimizerName.SGD, 0.1, 1), Task.BINARY, 5, 2,
          Device.cpu())) {
        assertThatThrownBy(() -> small.loadParameters(new ByteArrayInputStream(out.toByteArray())))
            .isInstanceOf(IllegalArgumentException.class)
            .hasMessage("Cannot load parameters: the file has 57 values (expected 6 for this model)");
      }
    }
  }

  @Test
  void setParametersRoundTripsAndChecksTheLength() {
    try (FlatModel model = FlatModel.create(mlp(List.of(3), ModelSpec.Activation.RELU, 0, 1), Task.BINARY, 2, 2,
        Device.cpu())) {
      float[] p = new float[model.numParameters()];
      for (int i = 0; i < p.length; i++) {
        p[i] = i * 0.5f - 1;
      }
      model.setParameters(p);
      p[0] = 42; // the model keeps its own copy
      float[] read = model.parameters();
      assertThat(read[0]).isEqualTo(-1f);
      assertThat(read[read.length - 1]).isEqualTo((p.length - 1) * 0.5f - 1);
      assertThatThrownBy(() -> model.setParameters(new float[3]))
          .hasMessage("Invalid parameter vector length: 3 (expected " + p.length + ")");
    }
  }

  // ---- inputs, dropout, threads ---------------------------------------------------------------------------------

  @Test
  void readsDirectBuffersAtTheirPositionWithoutMovingThem() {
    Datasets d = Datasets.random(9, 10, 4, Task.BINARY, 2);
    try (FlatModel model = FlatModel.create(logistic(ModelSpec.OptimizerName.SGD, 0.1, 1), Task.BINARY, 4, 2,
        Device.cpu())) {
      float heapLoss = model.computeGradients(d.featureRows(2, 8), d.labelRows(2, 8), 8);
      float[] heapGradients = model.gradients().clone();

      FloatBuffer features = ByteBuffer.allocateDirect(40 * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
      features.put(d.features()).position(8);
      FloatBuffer labels = ByteBuffer.allocateDirect(10 * 4).order(ByteOrder.BIG_ENDIAN).asFloatBuffer(); // not native: converted
      labels.put(d.labels()).position(2);
      assertThat(model.computeGradients(features, labels, 8)).isEqualTo(heapLoss);
      assertThat(model.gradients()).containsExactly(heapGradients);
      assertThat(features.position()).isEqualTo(8);
      assertThat(labels.position()).isEqualTo(2);
    }
  }

  @Test
  void badBatchesAreRefusedWithTheRowAndValue() {
    try (FlatModel binary = FlatModel.create(logistic(ModelSpec.OptimizerName.SGD, 0.1, 1), Task.BINARY, 2, 2,
            Device.cpu());
        FlatModel multiclass = FlatModel.create(logistic(ModelSpec.OptimizerName.SGD, 0.1, 1), Task.MULTICLASS, 2, 3,
            Device.cpu())) {
      FloatBuffer x = FloatBuffer.wrap(new float[] {1, 2, 3, 4});
      assertThatThrownBy(() -> binary.computeGradients(x, FloatBuffer.wrap(new float[] {0, 2}), 2))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid label in row 1 of the batch: 2.0 (expected 0 or 1)");
      assertThatThrownBy(() -> multiclass.computeGradients(x, FloatBuffer.wrap(new float[] {1.5f, 0}), 2))
          .hasMessage("Invalid label in row 0 of the batch: 1.5 (expected a class index in 0..2)");
      assertThatThrownBy(() -> binary.computeGradients(x, FloatBuffer.wrap(new float[] {0, 1}), 3))
          .hasMessage("Invalid features buffer: 4 floats remaining (expected 3 rows × 2 features = 6)");
      assertThatThrownBy(() -> binary.computeGradients(x, FloatBuffer.wrap(new float[] {0}), 2))
          .hasMessage("Invalid labels buffer: 1 floats remaining (expected 2)");
      assertThatThrownBy(() -> binary.predict(x, 0)).hasMessage("Invalid batch: 0 rows (expected at least 1)");
      // A refused batch leaves the model usable.
      assertThat(binary.computeGradients(x, FloatBuffer.wrap(new float[] {0, 1}), 2)).isPositive();
    }
    assertThatThrownBy(() -> FlatModel.create(logistic(ModelSpec.OptimizerName.SGD, 0.1, 1), Task.REGRESSION, 2, 0,
        Device.cpu()))
        .hasMessage("Invalid model field 'type': 'logistic' (expected one of: linear, mlp for a regression task)");
  }

  @Test
  void closedModelIsRefused() {
    FlatModel model = FlatModel.create(logistic(ModelSpec.OptimizerName.SGD, 0.1, 1), Task.BINARY, 2, 2, Device.cpu());
    model.close();
    model.close();
    assertThatThrownBy(model::parameters).isInstanceOf(IllegalStateException.class).hasMessage("Cannot use a closed model");
  }

  @Test
  void dropoutMasksDependOnSeedStreamAndStepOnly() {
    Datasets d = Datasets.random(10, 32, 6, Task.BINARY, 2);
    ModelSpec spec = mlp(List.of(16), ModelSpec.Activation.RELU, 0.5, 7);
    try (FlatModel a = FlatModel.create(spec, Task.BINARY, 6, 2, Device.cpu());
        FlatModel b = FlatModel.create(spec, Task.BINARY, 6, 2, Device.cpu())) {
      float lossA0 = a.computeGradients(d.featureRows(0, 32), d.labelRows(0, 32), 32);
      float[] gA0 = a.gradients().clone();
      float lossA1 = a.computeGradients(d.featureRows(0, 32), d.labelRows(0, 32), 32); // same parameters, step 1
      assertThat(lossA1).isNotEqualTo(lossA0);

      float lossB0 = b.computeGradients(d.featureRows(0, 32), d.labelRows(0, 32), 32);
      assertThat(lossB0).isEqualTo(lossA0);
      assertThat(b.gradients()).containsExactly(gA0);

      b.setTrainingSteps(0); // as after resuming from a checkpoint taken at step 0
      b.setRandomStream(1); // another worker
      assertThat(b.computeGradients(d.featureRows(0, 32), d.labelRows(0, 32), 32)).isNotEqualTo(lossA0);

      // No dropout outside training: predictions and validation loss are deterministic.
      assertThat(a.predict(d.featureRows(0, 32), 32)).containsExactly(a.predict(d.featureRows(0, 32), 32));
      assertThat(a.computeLoss(d.featureRows(0, 32), d.labelRows(0, 32), 32))
          .isEqualTo(a.computeLoss(d.featureRows(0, 32), d.labelRows(0, 32), 32));
    }
  }

  @Test
  void modelsTrainConcurrentlyOnSeparateThreads() throws Exception {
    Datasets d = Datasets.random(11, 64, 8, Task.MULTICLASS, 3);
    ModelSpec spec = mlp(List.of(8), ModelSpec.Activation.TANH, 0, 13);
    float[] expected;
    try (FlatModel reference = FlatModel.create(spec, Task.MULTICLASS, 8, 3, Device.cpu())) {
      reference.computeGradients(d.featureRows(0, 64), d.labelRows(0, 64), 64);
      expected = reference.gradients().clone();
    }
    ExecutorService pool = Executors.newFixedThreadPool(2);
    try {
      List<Future<float[]>> results = new ArrayList<>();
      for (int t = 0; t < 2; t++) {
        results.add(pool.submit(() -> {
          try (FlatModel model = FlatModel.create(spec, Task.MULTICLASS, 8, 3, Device.cpu())) {
            for (int i = 0; i < 200; i++) {
              model.computeGradients(d.featureRows(0, 64), d.labelRows(0, 64), 64);
            }
            return model.gradients().clone();
          }
        }));
      }
      for (Future<float[]> result : results) {
        assertThat(result.get()).containsExactly(expected);
      }
    } finally {
      pool.shutdownNow();
    }
  }

  // ---- helpers --------------------------------------------------------------------------------------------------

  static float train(FlatModel model, Optimizer optimizer, Datasets data, int epochs, int batch) {
    float[] params = model.parameters();
    float loss = Float.NaN;
    for (int epoch = 0; epoch < epochs; epoch++) {
      for (int from = 0; from < data.rows(); from += batch) {
        int rows = Math.min(batch, data.rows() - from);
        loss = model.computeGradients(data.featureRows(from, rows), data.labelRows(from, rows), rows);
        optimizer.update(params, model.gradients());
        model.setParameters(params);
      }
    }
    return loss;
  }

  static double accuracy(FlatModel model, Datasets data, int from, int rows) {
    float[] predicted = model.predict(data.featureRows(from, rows), rows);
    int correct = 0;
    int k = model.numOutputs();
    for (int r = 0; r < rows; r++) {
      int label = (int) data.labels()[from + r];
      int guess;
      if (model.task() == Task.BINARY) {
        guess = predicted[r] > 0.5f ? 1 : 0;
      } else {
        guess = 0;
        for (int c = 1; c < k; c++) {
          if (predicted[r * k + c] > predicted[r * k + guess]) {
            guess = c;
          }
        }
      }
      correct += guess == label ? 1 : 0;
    }
    return correct / (double) rows;
  }

  private static int[] bits(float[] values) {
    int[] bits = new int[values.length];
    for (int i = 0; i < values.length; i++) {
      bits[i] = Float.floatToRawIntBits(values[i]);
    }
    return bits;
  }

  private static List<Float> floats(float[] values) {
    List<Float> list = new ArrayList<>();
    for (float v : values) {
      list.add(v);
    }
    return list;
  }
}
