package dev.stagecraft.training.model;

import java.util.function.Supplier;

/**
 * Stochastic gradient descent with momentum, as PyTorch's {@code SGD} (no dampening, no weight decay):
 * {@code v = momentum·v + g}, then {@code p -= lr·v}, or with Nesterov {@code p -= lr·(g + momentum·v)}. With
 * momentum 0 it is plain SGD and keeps no velocity.
 */
public final class Sgd implements Optimizer {
  public static final String NAME = "sgd";

  private final int numParameters;
  private float lr;
  private final float momentum;
  private final boolean nesterov;
  private final float[] velocity;
  private long steps;

  /** Classical (heavy-ball) momentum. */
  public Sgd(int numParameters, float lr, float momentum) {
    this(numParameters, lr, momentum, false);
  }

  private Sgd(int numParameters, float lr, float momentum, boolean nesterov) {
    if (numParameters < 0) {
      throw new IllegalArgumentException("Invalid parameter count: " + numParameters + " (expected >= 0)");
    }
    if (!(momentum >= 0 && momentum < 1)) {
      throw new IllegalArgumentException("Invalid SGD momentum: " + momentum + " (expected 0 <= momentum < 1)");
    }
    this.numParameters = numParameters;
    this.lr = OptimizerStates.requireLr("SGD", lr);
    this.momentum = momentum;
    this.nesterov = nesterov;
    this.velocity = new float[momentum == 0 ? 0 : numParameters];
  }

  /** Nesterov momentum: the update looks ahead along the velocity. */
  public static Sgd nesterov(int numParameters, float lr, float momentum) {
    return new Sgd(numParameters, lr, momentum, true);
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
    lr = OptimizerStates.requireLr("SGD", value);
  }

  public float momentum() {
    return momentum;
  }

  public boolean isNesterov() {
    return nesterov;
  }

  @Override
  public void update(float[] params, float[] grads) {
    OptimizerStates.checkLengths(numParameters, params, grads);
    final float lr = this.lr;
    final float mu = momentum;
    if (mu == 0) {
      for (int i = 0; i < numParameters; i++) {
        params[i] -= lr * grads[i];
      }
    } else if (nesterov) {
      final float[] v = velocity;
      for (int i = 0; i < numParameters; i++) {
        float g = grads[i];
        float vi = mu * v[i] + g;
        v[i] = vi;
        params[i] -= lr * (g + mu * vi);
      }
    } else {
      final float[] v = velocity;
      for (int i = 0; i < numParameters; i++) {
        float vi = mu * v[i] + grads[i];
        v[i] = vi;
        params[i] -= lr * vi;
      }
    }
    steps++;
  }

  @Override
  public Supplier<byte[]> snapshotState() {
    return OptimizerStates.snapshot(NAME, numParameters, steps, stateBuffers());
  }

  @Override
  public void importState(byte[] state) {
    steps = OptimizerStates.decodeState(state, NAME, numParameters, stateBuffers());
  }

  private float[][] stateBuffers() {
    return momentum == 0 ? new float[0][] : new float[][] {velocity};
  }
}
