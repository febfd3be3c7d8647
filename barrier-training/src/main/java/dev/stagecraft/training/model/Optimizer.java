package dev.stagecraft.training.model;

import java.util.function.Supplier;

/**
 * Updates a flat parameter vector from a flat gradient vector, in plain Java, so its whole state is a few float
 * arrays and a step count that a checkpoint stores bit for bit.
 *
 * <p>Not thread-safe: one optimizer per model, used by one thread. Arithmetic is deterministic, so two optimizers
 * with the same state fed the same gradients produce bit-identical parameters, on any JVM.
 */
public interface Optimizer {

  /** The optimizer a spec names, for a vector of {@code numParameters} floats, in its initial state. */
  static Optimizer create(ModelSpec spec, int numParameters) {
    return switch (spec.optimizer()) {
      case SGD -> new Sgd(numParameters, (float) spec.lr(), (float) spec.momentum());
      case ADAM -> new Adam(numParameters, (float) spec.lr());
    };
  }

  /** The lower-case name this optimizer is configured by ({@code sgd}, {@code adam}). */
  String name();

  /** Length of the vectors it updates. */
  int numParameters();

  /** Updates applied so far (restored by {@link #importState}). */
  long steps();

  /** The learning rate of the next updates. */
  float lr();

  /**
   * Changes the learning rate of the next updates (a schedule; not part of the exported state, which a schedule
   * recomputes from the step count).
   *
   * @throws IllegalArgumentException if {@code value} is not a positive finite number
   */
  void setLr(float value);

  /**
   * Applies one update: {@code params} is changed in place from {@code grads}, which is not modified.
   *
   * @throws IllegalArgumentException if either array's length is not {@link #numParameters()}
   */
  void update(float[] params, float[] grads);

  /**
   * The full state (step count and every buffer), in a self-describing binary form for checkpoints: magic "SCOS",
   * version, optimizer name, length, step count, then each buffer's floats, big-endian.
   */
  default byte[] exportState() {
    return snapshotState().get();
  }

  /**
   * Copies the state now and encodes it, as {@link #exportState()} does, only when the supplier is called: a
   * checkpoint takes the copy at a step boundary on the training thread and leaves the encoding to its writer.
   */
  Supplier<byte[]> snapshotState();

  /**
   * Replaces the state with one from {@link #exportState()}.
   *
   * @throws IllegalArgumentException if the state is malformed, from another optimizer, or for another length
   */
  void importState(byte[] state);
}
