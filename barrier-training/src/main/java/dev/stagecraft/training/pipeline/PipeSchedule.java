package dev.stagecraft.training.pipeline;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The order in which one pipeline stage runs the forward and backward passes of a step's micro-batches.
 *
 * <ul>
 *   <li>{@link #GPIPE}: every forward, then every backward (in reverse order). A stage holds the activations of all
 *       {@code M} micro-batches at once.
 *   <li>{@link #ONE_F_ONE_B}: stage {@code s} of {@code P} first runs {@code P - 1 - s} forwards (the warm-up, so the
 *       last stage can start its first backward at once), then alternates one forward and one backward, then runs the
 *       remaining backwards. A stage never holds more than {@code P - s} micro-batches of activations.
 * </ul>
 *
 * <p>Both are synchronous: the optimizer runs once per step, after every micro-batch's backward, on the gradient of
 * the whole batch. Both leave the same idle time in theory, the bubble: {@code (P - 1) / (M + P - 1)} of the step
 * when forward and backward take equal time on every stage.
 */
public enum PipeSchedule {
  GPIPE("gpipe"),
  ONE_F_ONE_B("1f1b");

  private final String label;

  PipeSchedule(String label) {
    this.label = label;
  }

  public String label() {
    return label;
  }

  /** One pass of one micro-batch. */
  public record Op(boolean forward, int microBatch) {
    @Override
    public String toString() {
      return (forward ? "F" : "B") + microBatch;
    }
  }

  /** Every forward and backward stage {@code stage} of {@code stages} runs in a step of {@code microBatches}. */
  public List<Op> ops(int stage, int stages, int microBatches) {
    if (stages < 1 || stage < 0 || stage >= stages || microBatches < 1) {
      throw new IllegalArgumentException("Invalid pipeline position: stage " + stage + " of " + stages + ", "
          + microBatches + " micro-batches");
    }
    List<Op> ops = new ArrayList<>(2 * microBatches);
    if (this == GPIPE) {
      for (int m = 0; m < microBatches; m++) {
        ops.add(new Op(true, m));
      }
      for (int m = microBatches - 1; m >= 0; m--) {
        ops.add(new Op(false, m));
      }
      return ops;
    }
    int warmup = Math.min(stages - 1 - stage, microBatches);
    int forward = 0;
    int backward = 0;
    while (forward < warmup) {
      ops.add(new Op(true, forward++));
    }
    while (forward < microBatches) {
      ops.add(new Op(true, forward++));
      ops.add(new Op(false, backward++));
    }
    while (backward < microBatches) {
      ops.add(new Op(false, backward++));
    }
    return ops;
  }

  /** The most micro-batches whose activations {@code ops} hold at once. */
  public static int peakHeld(List<Op> ops) {
    int held = 0;
    int peak = 0;
    for (Op op : ops) {
      held += op.forward() ? 1 : -1;
      peak = Math.max(peak, held);
    }
    return peak;
  }

  /** The schedule's idle fraction with equal forward and backward times on every stage: (P − 1) / (M + P − 1). */
  public static double theoreticalBubble(int stages, int microBatches) {
    return (stages - 1) / (double) (microBatches + stages - 1);
  }

  /** @throws IllegalArgumentException naming the valid values */
  public static PipeSchedule parse(String value) {
    String v = value.trim().toLowerCase(Locale.ROOT);
    for (PipeSchedule s : values()) {
      if (s.label.equals(v)) {
        return s;
      }
    }
    throw new IllegalArgumentException("'" + value + "' (expected one of: gpipe, 1f1b)");
  }
}
