package dev.stagecraft.training.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import ai.djl.Device;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Pipeline stages against the whole {@link FlatModel}: an MLP with hidden [16, 12, 8] (4 layers) on 6 features,
 * split as [0..1][2..3] and [0][1..2][3], for each task; the schedules run on one thread, stage by stage, in the
 * order each stage would run them.
 */
class StageModelTest {
  private static final int FEATURES = 6;
  private static final int ROWS = 32;
  private static final int MICRO_BATCHES = 4;
  private static final int MICRO_ROWS = ROWS / MICRO_BATCHES;
  private static final List<Integer> HIDDEN = List.of(16, 12, 8);
  private static final int[][][] SPLITS = {{{0, 1}, {2, 3}}, {{0, 0}, {1, 2}, {3, 3}}};

  /** One case per task, each with another activation. */
  private record Case(Task task, int numClasses, ModelSpec.Activation activation, long seed) {
    ModelSpec spec(double dropout) {
      return FlatModelTest.mlp(HIDDEN, activation, dropout, seed);
    }

    int numOutputs() {
      return task.numOutputs(numClasses);
    }
  }

  private static final List<Case> CASES = List.of(
      new Case(Task.BINARY, 2, ModelSpec.Activation.RELU, 11),
      new Case(Task.MULTICLASS, 3, ModelSpec.Activation.TANH, 12),
      new Case(Task.REGRESSION, 0, ModelSpec.Activation.SIGMOID, 13));

  /** One stage's next step in a schedule. */
  private record Op(boolean forward, int microBatch) {}

  // ---- parameters -----------------------------------------------------------------------------------------------

  @Test
  void stagesInitialParametersConcatenatedAreFlatModels() {
    for (Case c : CASES) {
      try (FlatModel flat = FlatModel.create(c.spec(0), c.task(), FEATURES, c.numClasses(), Device.cpu())) {
        float[] whole = flat.parameters();
        // Independently of the shared code: Glorot-uniform from one generator over all layers, zero biases.
        assertThat(whole).as("%s", c).containsExactly(glorot(c.spec(0).seed(), widths(c)));
        for (int[][] split : SPLITS) {
          List<StageModel> stages = stages(c, 0, split);
          try {
            float[] concatenated = new float[0];
            for (StageModel stage : stages) {
              assertThat(stage.parameterBytes()).isEqualTo(4L * stage.numParameters());
              concatenated = concat(concatenated, stage.parameters());
            }
            assertThat(concatenated).as("%s %s", c, Arrays.deepToString(split)).containsExactly(whole);
          } finally {
            stages.forEach(StageModel::close);
          }
        }
      }
    }
  }

  @Test
  void widthsAndRolesFollowTheLayerRange() {
    Case c = CASES.get(1);
    List<StageModel> stages = stages(c, 0, SPLITS[1]);
    try {
      assertThat(StageModel.numLayers(c.spec(0))).isEqualTo(4);
      assertThat(stages).extracting(StageModel::inputWidth).containsExactly(6, 16, 8);
      assertThat(stages).extracting(StageModel::outputWidth).containsExactly(16, 8, 3);
      assertThat(stages).extracting(StageModel::isFirst).containsExactly(true, false, false);
      assertThat(stages).extracting(StageModel::isLast).containsExactly(false, false, true);
      assertThat(stages).extracting(StageModel::numParameters)
          .containsExactly(6 * 16 + 16, 16 * 12 + 12 + 12 * 8 + 8, 8 * 3 + 3);
    } finally {
      stages.forEach(StageModel::close);
    }
  }

  @Test
  void setParametersRoundTripsAndChecksTheLength() {
    try (StageModel stage = StageModel.create(CASES.get(0).spec(0), Task.BINARY, FEATURES, 2, Device.cpu(), 1, 2)) {
      float[] p = new float[stage.numParameters()];
      for (int i = 0; i < p.length; i++) {
        p[i] = i * 0.25f - 3;
      }
      stage.setParameters(p);
      assertThat(stage.parameters()).containsExactly(p);
      assertThatThrownBy(() -> stage.setParameters(new float[3]))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid parameter vector length: 3 (expected " + p.length + ")");
    }
  }

  // ---- gradients against the whole model ------------------------------------------------------------------------

  @Test
  void microBatchedStagesMatchFlatModelInBothSchedules() {
    for (Case c : CASES) {
      Datasets d = Datasets.random(c.seed() + 100, ROWS, FEATURES, c.task(), c.numClasses());
      float flatLoss;
      float[] flatGradients;
      try (FlatModel flat = FlatModel.create(c.spec(0), c.task(), FEATURES, c.numClasses(), Device.cpu())) {
        flatLoss = flat.computeGradients(d.featureRows(0, ROWS), d.labelRows(0, ROWS), ROWS);
        flatGradients = flat.gradients().clone();
      }
      for (int[][] split : SPLITS) {
        int p = split.length;
        String what = c.task() + " " + Arrays.deepToString(split);
        List<List<Op>> gpipe = new ArrayList<>();
        List<List<Op>> oneFOneB = new ArrayList<>();
        for (int s = 0; s < p; s++) {
          gpipe.add(gpipe());
          oneFOneB.add(oneFOneB(s, p));
        }
        float[] gpipeGradients = runAndCompare(c, split, d, gpipe, what + " GPipe", flatLoss, flatGradients);
        float[] interleavedGradients =
            runAndCompare(c, split, d, oneFOneB, what + " 1F1B", flatLoss, flatGradients);
        assertThat(relativeError(interleavedGradients, gpipeGradients)).as(what).isLessThan(1e-6);
      }
    }
  }

  /** Runs one step of the schedule on fresh stages, checks loss, gradients and memory, returns the gradients. */
  private static float[] runAndCompare(Case c, int[][] split, Datasets d, List<List<Op>> schedule, String what,
      float flatLoss, float[] flatGradients) {
    List<StageModel> stages = stages(c, 0, split);
    try {
      float[] losses = run(stages, schedule, d);
      double meanLoss = 0;
      for (float loss : losses) {
        meanLoss += loss * MICRO_ROWS / (double) ROWS; // row-weighted
      }
      assertThat(meanLoss).as(what).isCloseTo(flatLoss, within(1e-5 * Math.max(1, Math.abs(flatLoss))));

      float[] gradients = new float[0];
      for (StageModel stage : stages) {
        gradients = concat(gradients, stage.gradients());
      }
      for (int i = 0; i < gradients.length; i++) {
        gradients[i] /= ROWS; // sums over rows -> gradient of the batch mean
      }
      double error = relativeError(gradients, flatGradients);
      LoggerFactory.getLogger(StageModelTest.class).info("{}: gradient relative error {}, loss {} vs {}", what,
          String.format("%.1e", error), meanLoss, flatLoss);
      assertThat(error).as(what).isLessThan(1e-5);

      for (int s = 0; s < stages.size(); s++) {
        StageModel stage = stages.get(s);
        // GPipe holds every micro-batch; 1F1B holds at most (stages - s) on stage s.
        boolean isGpipe = schedule.get(s).equals(gpipe());
        int expectedPeak = isGpipe ? MICRO_BATCHES : Math.min(stages.size() - s, MICRO_BATCHES);
        assertThat(stage.peakHeldMicroBatches()).as("%s stage %d", what, s).isEqualTo(expectedPeak);
        assertThat(stage.peakActivationBytes()).as("%s stage %d", what, s)
            .isEqualTo(expectedPeak * MICRO_ROWS * 4L * activationFloatsPerRow(c, 0, split[s]));
        assertThat(stage.heldMicroBatches()).isZero();
        assertThat(stage.heldActivationBytes()).isZero();
        stage.resetPeak();
        assertThat(stage.peakHeldMicroBatches()).isZero();
        assertThat(stage.peakActivationBytes()).isZero();
      }
      return gradients;
    } finally {
      stages.forEach(StageModel::close);
    }
  }

  @Test
  void gpipeHoldsEveryMicroBatchUntilItsBackward() {
    Case c = CASES.get(2);
    Datasets d = Datasets.random(5, ROWS, FEATURES, c.task(), c.numClasses());
    List<StageModel> stages = stages(c, 0, SPLITS[0]);
    try {
      StageModel first = stages.get(0);
      StageModel last = stages.get(1);
      long firstBytes = MICRO_ROWS * 4L * (16 * 2 + 12 * 2); // features not counted
      long lastBytes = MICRO_ROWS * 4L * (12 + 8 * 2 + 1); // input, hidden 8 (linear + activation), output
      assertThat(first.activationBytes(MICRO_ROWS)).isEqualTo(firstBytes);
      assertThat(last.activationBytes(MICRO_ROWS)).isEqualTo(lastBytes);
      float[][] activations = new float[MICRO_BATCHES][];
      for (int m = 0; m < MICRO_BATCHES; m++) {
        activations[m] = first.forward(m, d.featureRows(m * MICRO_ROWS, MICRO_ROWS), MICRO_ROWS);
        assertThat(activations[m]).hasSize(MICRO_ROWS * 12);
        last.forwardLoss(m, FloatBuffer.wrap(activations[m]), d.labelRows(m * MICRO_ROWS, MICRO_ROWS), MICRO_ROWS);
        assertThat(first.heldMicroBatches()).isEqualTo(m + 1);
        assertThat(first.heldActivationBytes()).isEqualTo((m + 1) * firstBytes);
        assertThat(last.heldActivationBytes()).isEqualTo((m + 1) * lastBytes);
      }
      for (int m = MICRO_BATCHES - 1; m >= 0; m--) {
        float[] inputGradient = last.backward(m, null, MICRO_ROWS);
        assertThat(inputGradient).hasSize(MICRO_ROWS * 12);
        assertThat(first.backward(m, FloatBuffer.wrap(inputGradient), 0)).isNull();
        assertThat(first.heldMicroBatches()).isEqualTo(m);
        assertThat(last.heldActivationBytes()).isEqualTo(m * lastBytes);
      }
      assertThat(first.peakHeldMicroBatches()).isEqualTo(4);
      assertThat(last.peakActivationBytes()).isEqualTo(4 * lastBytes);
    } finally {
      stages.forEach(StageModel::close);
    }
  }

  @Test
  void gradientsAccumulateUntilZeroed() {
    Case c = CASES.get(0);
    Datasets d = Datasets.random(6, MICRO_ROWS, FEATURES, c.task(), c.numClasses());
    try (StageModel whole = StageModel.create(c.spec(0), c.task(), FEATURES, 2, Device.cpu(), 0, 3)) {
      assertThat(whole.gradients()).containsOnly(0f);
      whole.forwardLoss(0, d.featureRows(0, MICRO_ROWS), d.labelRows(0, MICRO_ROWS), MICRO_ROWS);
      assertThat(whole.backward(0, null, MICRO_ROWS)).isNull(); // first and last: no input gradient
      float[] once = whole.gradients().clone();
      whole.forwardLoss(0, d.featureRows(0, MICRO_ROWS), d.labelRows(0, MICRO_ROWS), MICRO_ROWS); // id free again
      whole.backward(0, null, MICRO_ROWS);
      float[] twice = whole.gradients();
      for (int i = 0; i < once.length; i++) {
        assertThat(twice[i]).isCloseTo(2 * once[i], within(1e-6f * Math.max(1, Math.abs(once[i]))));
      }
      whole.zeroGradients();
      assertThat(whole.gradients()).containsOnly(0f);
    }
  }

  // ---- dropout --------------------------------------------------------------------------------------------------

  @Test
  void dropoutMasksDependOnSeedStreamStepAndMicroBatch() {
    Case c = CASES.get(0);
    ModelSpec spec = c.spec(0.5);
    Datasets d = Datasets.random(7, MICRO_ROWS, FEATURES, c.task(), c.numClasses());
    try (StageModel a = StageModel.create(spec, c.task(), FEATURES, 2, Device.cpu(), 0, 1);
        StageModel b = StageModel.create(spec, c.task(), FEATURES, 2, Device.cpu(), 0, 1)) {
      // Hidden layers 0 and 1 each keep their linear, activation and dropout outputs.
      assertThat(a.activationBytes(1)).isEqualTo(4L * (16 + 12) * 3);
      float[] a0 = forwardAndDrop(a, 0, d);
      assertThat(forwardAndDrop(b, 0, d)).containsExactly(a0); // same seed, stream, step, micro-batch
      assertThat(forwardAndDrop(b, 1, d)).isNotEqualTo(a0); // another micro-batch
      b.endStep();
      assertThat(b.trainingSteps()).isEqualTo(1);
      assertThat(forwardAndDrop(b, 0, d)).isNotEqualTo(a0); // another step
      b.setTrainingSteps(0);
      assertThat(forwardAndDrop(b, 0, d)).containsExactly(a0); // as when resuming at step 0
      b.setRandomStream(1);
      assertThat(forwardAndDrop(b, 0, d)).isNotEqualTo(a0); // another replica
    }
  }

  private static float[] forwardAndDrop(StageModel stage, int microBatch, Datasets d) {
    float[] out = stage.forward(microBatch, d.featureRows(0, MICRO_ROWS), MICRO_ROWS);
    assertThat(stage.discardMicroBatches()).isEqualTo(1);
    assertThat(stage.heldActivationBytes()).isZero();
    return out;
  }

  // ---- errors ---------------------------------------------------------------------------------------------------

  @Test
  void badLayerRangesAreRefusedWithTheRangeAndTheLayerCount() {
    ModelSpec spec = CASES.get(0).spec(0);
    for (int[] range : new int[][] {{-1, 0}, {0, 4}, {2, 1}}) {
      assertThatThrownBy(() -> StageModel.create(spec, Task.BINARY, FEATURES, 2, Device.cpu(), range[0], range[1]))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid layer range " + range[0] + ".." + range[1]
              + ": the model has 4 layers (expected 0 <= first <= last <= 3)");
    }
  }

  @Test
  void misusedMicroBatchesAreRefusedWithTheirIds() {
    Case c = CASES.get(1);
    Datasets d = Datasets.random(8, MICRO_ROWS, FEATURES, c.task(), c.numClasses());
    List<StageModel> stages = stages(c, 0, SPLITS[0]);
    try {
      StageModel first = stages.get(0);
      StageModel last = stages.get(1);
      assertThatThrownBy(() -> first.backward(7, FloatBuffer.allocate(MICRO_ROWS * 12), 0))
          .isInstanceOf(IllegalStateException.class)
          .hasMessage("Cannot run backward of micro-batch 7: it is not held (never forwarded, or its backward already"
              + " ran); held: []");
      float[] act = first.forward(3, d.featureRows(0, MICRO_ROWS), MICRO_ROWS);
      assertThatThrownBy(() -> first.forward(3, d.featureRows(0, MICRO_ROWS), MICRO_ROWS))
          .isInstanceOf(IllegalStateException.class)
          .hasMessage("Cannot forward micro-batch 3: it is already held (its backward has not run yet)");
      assertThatThrownBy(() -> first.backward(3, FloatBuffer.allocate(5), 0))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid output gradient buffer: 5 floats remaining (expected 8 rows × 12 outputs = 96)");
      assertThat(first.heldMicroBatches()).isEqualTo(1); // a refused argument keeps it
      assertThatThrownBy(() -> first.setParameters(first.parameters()))
          .isInstanceOf(IllegalStateException.class)
          .hasMessage("Cannot set parameters while micro-batches [3] are held (run their backward first)");
      assertThatThrownBy(first::endStep)
          .hasMessage("Cannot end the step: micro-batches [3] are still held (run their backward first)");
      assertThatThrownBy(() -> first.forwardLoss(4, d.featureRows(0, MICRO_ROWS), d.labelRows(0, MICRO_ROWS),
          MICRO_ROWS))
          .isInstanceOf(IllegalStateException.class)
          .hasMessage("Cannot compute the loss on layers 0..1: the output layer (3) is on the last stage; use forward");
      assertThatThrownBy(() -> last.forward(3, FloatBuffer.wrap(act), MICRO_ROWS))
          .isInstanceOf(IllegalStateException.class)
          .hasMessage("Cannot run forward on the last stage (layers 2..3): use forwardLoss");
      assertThatThrownBy(() -> last.forwardLoss(3, FloatBuffer.wrap(act, 0, 50), d.labelRows(0, MICRO_ROWS),
          MICRO_ROWS))
          .hasMessage("Invalid input buffer: 50 floats remaining (expected 8 rows × 12 inputs = 96)");

      float[] labels = d.labels().clone();
      labels[5] = 1.5f;
      assertThatThrownBy(() -> last.forwardLoss(3, FloatBuffer.wrap(act), FloatBuffer.wrap(labels), MICRO_ROWS))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid label in row 5 of the batch: 1.5 (expected a class index in 0..2)");
      assertThat(last.heldMicroBatches()).isZero(); // a refused batch is not held

      last.forwardLoss(3, FloatBuffer.wrap(act), d.labelRows(0, MICRO_ROWS), MICRO_ROWS);
      first.backward(3, FloatBuffer.wrap(last.backward(3, null, MICRO_ROWS)), 0);
      assertThatThrownBy(() -> last.backward(3, null, MICRO_ROWS))
          .isInstanceOf(IllegalStateException.class)
          .hasMessageStartingWith("Cannot run backward of micro-batch 3: it is not held");
      first.endStep();
    } finally {
      stages.forEach(StageModel::close);
    }
    StageModel closed = stages.get(0);
    assertThatThrownBy(closed::parameters).isInstanceOf(IllegalStateException.class)
        .hasMessage("Cannot use a closed model");
  }

  // ---- helpers --------------------------------------------------------------------------------------------------

  private static List<StageModel> stages(Case c, double dropout, int[][] split) {
    List<StageModel> stages = new ArrayList<>();
    try {
      for (int[] range : split) {
        stages.add(StageModel.create(c.spec(dropout), c.task(), FEATURES, c.numClasses(), Device.cpu(), range[0],
            range[1]));
      }
      return stages;
    } catch (RuntimeException e) {
      stages.forEach(StageModel::close);
      throw e;
    }
  }

  /** All forwards, then all backwards (last micro-batch first). */
  private static List<Op> gpipe() {
    List<Op> ops = new ArrayList<>();
    for (int m = 0; m < MICRO_BATCHES; m++) {
      ops.add(new Op(true, m));
    }
    for (int m = MICRO_BATCHES - 1; m >= 0; m--) {
      ops.add(new Op(false, m));
    }
    return ops;
  }

  /** 1F1B on stage {@code s} of {@code p}: {@code p - s - 1} warm-up forwards, then alternating, then backwards. */
  private static List<Op> oneFOneB(int s, int p) {
    List<Op> ops = new ArrayList<>();
    int forwards = 0;
    int backwards = 0;
    for (; forwards < Math.min(p - s - 1, MICRO_BATCHES); forwards++) {
      ops.add(new Op(true, forwards));
    }
    while (forwards < MICRO_BATCHES) {
      ops.add(new Op(true, forwards++));
      ops.add(new Op(false, backwards++));
    }
    while (backwards < MICRO_BATCHES) {
      ops.add(new Op(false, backwards++));
    }
    return ops;
  }

  /**
   * Runs each stage's ops in order, round-robin over the stages, an op as soon as its input has arrived (the
   * previous stage's activations, or the next stage's gradient), as the workers would. Returns the losses.
   */
  private static float[] run(List<StageModel> stages, List<List<Op>> schedule, Datasets d) {
    int p = stages.size();
    List<Map<Integer, float[]>> activations = new ArrayList<>(); // input of stage s, by micro-batch
    List<Map<Integer, float[]>> gradients = new ArrayList<>(); // output gradient of stage s, by micro-batch
    for (int s = 0; s < p; s++) {
      activations.add(new HashMap<>());
      gradients.add(new HashMap<>());
    }
    float[] losses = new float[MICRO_BATCHES];
    int[] next = new int[p];
    boolean done = false;
    while (!done) {
      done = true;
      boolean progressed = false;
      for (int s = 0; s < p; s++) {
        if (next[s] == schedule.get(s).size()) {
          continue;
        }
        done = false;
        Op op = schedule.get(s).get(next[s]);
        StageModel stage = stages.get(s);
        int m = op.microBatch();
        if (op.forward()) {
          FloatBuffer input = s == 0 ? d.featureRows(m * MICRO_ROWS, MICRO_ROWS) : wrap(activations.get(s).remove(m));
          if (input == null) {
            continue;
          }
          if (stage.isLast()) {
            losses[m] = stage.forwardLoss(m, input, d.labelRows(m * MICRO_ROWS, MICRO_ROWS), MICRO_ROWS);
          } else {
            activations.get(s + 1).put(m, stage.forward(m, input, MICRO_ROWS));
          }
        } else {
          FloatBuffer outputGradient = stage.isLast() ? null : wrap(gradients.get(s).remove(m));
          if (outputGradient == null && !stage.isLast()) {
            continue;
          }
          float[] inputGradient = stage.backward(m, outputGradient, MICRO_ROWS);
          if (s > 0) {
            gradients.get(s - 1).put(m, inputGradient);
          } else {
            assertThat(inputGradient).isNull();
          }
        }
        next[s]++;
        progressed = true;
      }
      assertThat(progressed || done).as("the schedule deadlocked at %s", Arrays.toString(next)).isTrue();
    }
    return losses;
  }

  private static FloatBuffer wrap(float[] values) {
    return values == null ? null : FloatBuffer.wrap(values);
  }

  /** Floats per row a stage keeps: its input unless first, 2 per hidden unit (3 with dropout), 1 per output. */
  private static long activationFloatsPerRow(Case c, double dropout, int[] range) {
    int[] widths = widths(c);
    long floats = range[0] == 0 ? 0 : widths[range[0]];
    for (int layer = range[0]; layer <= range[1]; layer++) {
      boolean hidden = layer < HIDDEN.size();
      floats += (long) widths[layer + 1] * (hidden ? (dropout > 0 ? 3 : 2) : 1);
    }
    return floats;
  }

  private static int[] widths(Case c) {
    return new int[] {FEATURES, 16, 12, 8, c.numOutputs()};
  }

  private static float[] glorot(long seed, int[] widths) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] values = new float[0];
    for (int layer = 0; layer + 1 < widths.length; layer++) {
      int in = widths[layer];
      int out = widths[layer + 1];
      float[] weightsAndBias = new float[out * in + out];
      double limit = Math.sqrt(6.0 / (in + out));
      for (int j = 0; j < out * in; j++) {
        weightsAndBias[j] = (float) ((random.nextDouble() * 2 - 1) * limit);
      }
      values = concat(values, weightsAndBias);
    }
    return values;
  }

  /** max |actual - expected| / max |expected|. */
  private static double relativeError(float[] actual, float[] expected) {
    assertThat(actual).hasSameSizeAs(expected);
    double diff = 0;
    double scale = 0;
    for (int i = 0; i < expected.length; i++) {
      diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
      scale = Math.max(scale, Math.abs(expected[i]));
    }
    assertThat(scale).isPositive();
    return diff / scale;
  }

  private static float[] concat(float[] a, float[] b) {
    float[] result = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, result, a.length, b.length);
    return result;
  }
}
