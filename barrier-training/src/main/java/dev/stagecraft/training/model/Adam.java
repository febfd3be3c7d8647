package dev.stagecraft.training.model;

import java.util.function.Supplier;

/**
 * Adam (Kingma and Ba) with bias correction, as PyTorch's {@code Adam} without weight decay or AMSGrad: with
 * {@code t} the step number from 1, {@code m = β1·m + (1−β1)·g}, {@code v = β2·v + (1−β2)·g²}, then
 * {@code p -= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + ε)}.
 */
public final class Adam implements Optimizer {
  public static final String NAME = "adam";
  public static final float BETA1_DEFAULT = 0.9f;
  public static final float BETA2_DEFAULT = 0.999f;
  public static final float EPSILON_DEFAULT = 1e-8f;

  private final int numParameters;
  private float lr;
  private final float beta1;
  private final float beta2;
  private final float epsilon;
  private final float[] m;
  private final float[] v;
  private long steps;

  /** Adam with β1 0.9, β2 0.999 and ε 1e-8. */
  public Adam(int numParameters, float lr) {
    this(numParameters, lr, BETA1_DEFAULT, BETA2_DEFAULT, EPSILON_DEFAULT);
  }

  public Adam(int numParameters, float lr, float beta1, float beta2, float epsilon) {
    if (numParameters < 0) {
      throw new IllegalArgumentException("Invalid parameter count: " + numParameters + " (expected >= 0)");
    }
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
      throw new IllegalArgumentException(
          "Invalid Adam betas: " + beta1 + ", " + beta2 + " (expected each in [0, 1))");
    }
    if (!(epsilon > 0)) {
      throw new IllegalArgumentException("Invalid Adam epsilon: " + epsilon + " (expected > 0)");
    }
    this.numParameters = numParameters;
    this.lr = OptimizerStates.requireLr("Adam", lr);
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.epsilon = epsilon;
    this.m = new float[numParameters];
    this.v = new float[numParameters];
  }

  @Override
  public String name() {
    return NAME;
  }

  @Override
  public int numParameters() {
    return numParameters;
  }

  @Override
  public long steps() {
    return steps;
  }

  public float lr() {
    return lr;
  }

  @Override
  public void setLr(float value) {
    lr = OptimizerStates.requireLr("Adam", value);
  }

  @Override
  public void update(float[] params, float[] grads) {
    OptimizerStates.checkLengths(numParameters, params, grads);
    long t = steps + 1;
    // Bias corrections in double: 1 − β^t loses most of its digits in float for small t.
    double correction1 = 1 - Math.pow(beta1, t);
    double correction2 = 1 - Math.pow(beta2, t);
    final float stepSize = (float) (lr / correction1);
    final float invSqrtCorrection2 = (float) (1 / Math.sqrt(correction2));
    final float b1 = beta1;
    final float b2 = beta2;
    final float c1 = 1 - beta1;
    final float c2 = 1 - beta2;
    final float eps = epsilon;
    final float[] m = this.m;
    final float[] v = this.v;
    for (int i = 0; i < numParameters; i++) {
      float g = grads[i];
      float mi = b1 * m[i] + c1 * g;
      float vi = b2 * v[i] + c2 * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] -= stepSize * mi / ((float) Math.sqrt(vi) * invSqrtCorrection2 + eps);
    }
    steps = t;
  }

  @Override
  public Supplier<byte[]> snapshotState() {
    return OptimizerStates.snapshot(NAME, numParameters, steps, m, v);
  }

  @Override
  public void importState(byte[] state) {
    steps = OptimizerStates.decodeState(state, NAME, numParameters, m, v);
  }
}
