package dev.stagecraft.training.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class OptimizerTest {
  private static final float[] G1 = {0.5f, -1.0f};
  private static final float[] G2 = {0.25f, 0.5f};

  private static float[] start() {
    return new float[] {1.0f, -2.0f};
  }

  @Test
  void sgdWithMomentumMatchesHandComputedSteps() {
    Sgd sgd = new Sgd(2, 0.1f, 0.9f);
    float[] p = start();
    sgd.update(p, G1); // v = [0.5, -1]; p = [1 - 0.05, -2 + 0.1]
    assertThat(p[0]).isCloseTo(0.95f, within(1e-6f));
    assertThat(p[1]).isCloseTo(-1.9f, within(1e-6f));
    sgd.update(p, G2); // v = 0.9·v + g = [0.7, -0.4]; p -= 0.1·v
    assertThat(p[0]).isCloseTo(0.88f, within(1e-6f));
    assertThat(p[1]).isCloseTo(-1.86f, within(1e-6f));
    assertThat(sgd.steps()).isEqualTo(2);
    assertThat(G1).containsExactly(0.5f, -1.0f); // gradients are not modified
  }

  @Test
  void sgdWithoutMomentumIsPlainGradientDescent() {
    Sgd sgd = new Sgd(2, 0.1f, 0f);
    float[] p = start();
    sgd.update(p, G1);
    sgd.update(p, G2); // p = p0 - 0.1·(g1 + g2)
    assertThat(p[0]).isCloseTo(0.925f, within(1e-6f));
    assertThat(p[1]).isCloseTo(-1.95f, within(1e-6f));
  }

  @Test
  void nesterovLooksAheadAlongTheVelocity() {
    Sgd sgd = Sgd.nesterov(2, 0.1f, 0.9f);
    float[] p = start();
    sgd.update(p, G1); // v = g1; p -= 0.1·(g1 + 0.9·v) = [0.095, -0.19]
    assertThat(p[0]).isCloseTo(0.905f, within(1e-6f));
    assertThat(p[1]).isCloseTo(-1.81f, within(1e-6f));
    sgd.update(p, G2); // v = [0.7, -0.4]; p -= 0.1·(g2 + 0.9·v) = [0.088, 0.014]
    assertThat(p[0]).isCloseTo(0.817f, within(1e-6f));
    assertThat(p[1]).isCloseTo(-1.824f, within(1e-6f));
  }

  @Test
  void adamMatchesHandComputedSteps() {
    Adam adam = new Adam(2, 0.1f);
    float[] p = start();
    // Step 1: bias-corrected m̂ = g, v̂ = g², so each parameter moves by lr·g/(|g| + ε) ≈ 0.1 against the gradient.
    adam.update(p, G1);
    assertThat(p[0]).isCloseTo(0.9f, within(1e-6f));
    assertThat(p[1]).isCloseTo(-1.9f, within(1e-6f));
    // Step 2: m = [0.07, -0.04], v = [0.00031225, 0.001249]; m̂ = m/0.19, v̂ = v/0.001999;
    // p -= 0.1·m̂/(sqrt(v̂) + ε) = [0.0932180, -0.0266337].
    adam.update(p, G2);
    assertThat(p[0]).isCloseTo(0.8067820f, within(2e-6f));
    assertThat(p[1]).isCloseTo(-1.8733663f, within(2e-6f));
    assertThat(adam.steps()).isEqualTo(2);
  }

  @Test
  void exportedStateContinuesBitIdentically() {
    for (String name : List.of("sgd", "adam")) {
      int n = 1000;
      Optimizer original = create(name, n);
      Optimizer resumed = create(name, n);
      SplittableRandom random = new SplittableRandom(7);
      float[] params = randomVector(random, n);
      for (int i = 0; i < 5; i++) {
        original.update(params, randomVector(random, n));
      }
      byte[] state = original.exportState();
      resumed.importState(state);
      assertThat(resumed.steps()).isEqualTo(5);
      assertThat(resumed.exportState()).isEqualTo(state);

      float[] p1 = params.clone();
      float[] p2 = params.clone();
      for (int i = 0; i < 5; i++) {
        float[] g = randomVector(random, n);
        original.update(p1, g);
        resumed.update(p2, g);
      }
      assertThat(Arrays.equals(p1, p2)).as(name).isTrue();
      assertThat(resumed.exportState()).as(name).isEqualTo(original.exportState());
    }
  }

  @Test
  void aSnapshotHoldsTheStateOfWhenItWasTakenNotOfWhenItIsEncoded() {
    for (String name : new String[] {"sgd", "adam"}) {
      Optimizer optimizer = create(name, 100);
      SplittableRandom random = new SplittableRandom(3);
      float[] params = randomVector(random, 100);
      optimizer.update(params, randomVector(random, 100));
      byte[] then = optimizer.exportState();
      java.util.function.Supplier<byte[]> snapshot = optimizer.snapshotState();
      optimizer.update(params, randomVector(random, 100)); // training goes on before the writer encodes
      assertThat(snapshot.get()).as(name).isEqualTo(then);
      assertThat(optimizer.exportState()).as(name).isNotEqualTo(then);
    }
  }

  @Test
  void importRefusesAnotherOptimizerOrLengthAndKeepsItsState() {
    Adam adam = new Adam(3, 0.01f);
    adam.update(new float[3], new float[] {1, 2, 3});
    byte[] before = adam.exportState();

    assertThatThrownBy(() -> adam.importState(new Sgd(3, 0.1f, 0.9f).exportState()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Cannot import optimizer state: it is for 'sgd' (expected 'adam')");
    assertThatThrownBy(() -> adam.importState(new Adam(4, 0.01f).exportState()))
        .hasMessage("Cannot import optimizer state: it has 4 parameters (expected 3)");
    byte[] truncated = Arrays.copyOf(before, before.length - 1);
    assertThatThrownBy(() -> adam.importState(truncated)).hasMessageStartingWith("Invalid optimizer state: truncated");
    assertThatThrownBy(() -> adam.importState(new byte[] {1, 2, 3, 4}))
        .hasMessage("Invalid optimizer state: magic 0x01020304 (expected 0x53434f53)");
    assertThat(adam.exportState()).isEqualTo(before);
  }

  @Test
  void updateRefusesVectorsOfTheWrongLength() {
    Sgd sgd = new Sgd(3, 0.1f, 0.9f);
    assertThatThrownBy(() -> sgd.update(new float[3], new float[2]))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid gradient vector length: 2 (expected 3)");
    assertThatThrownBy(() -> sgd.update(new float[4], new float[3]))
        .hasMessage("Invalid parameter vector length: 4 (expected 3)");
  }

  @Test
  void createFollowsTheSpec() {
    ModelSpec adamSpec = new ModelSpec(
        ModelSpec.Type.LOGISTIC, List.of(), ModelSpec.Activation.RELU, 0, 1, 32, ModelSpec.OptimizerName.ADAM,
        0.01, 0.9, 1);
    assertThat(Optimizer.create(adamSpec, 5)).isInstanceOf(Adam.class);
    ModelSpec sgdSpec = new ModelSpec(
        ModelSpec.Type.LOGISTIC, List.of(), ModelSpec.Activation.RELU, 0, 1, 32, ModelSpec.OptimizerName.SGD,
        0.5, 0.0, 1);
    Optimizer sgd = Optimizer.create(sgdSpec, 5);
    assertThat(sgd.name()).isEqualTo("sgd");
    assertThat(((Sgd) sgd).lr()).isEqualTo(0.5f);
    assertThat(((Sgd) sgd).momentum()).isZero();
  }

  private static Optimizer create(String name, int n) {
    return name.equals("sgd") ? new Sgd(n, 0.05f, 0.9f) : new Adam(n, 0.01f);
  }

  private static float[] randomVector(SplittableRandom random, int n) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (float) random.nextGaussian();
    }
    return v;
  }
}
