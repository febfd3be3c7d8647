package dev.stagecraft.training.checkpoint;

import java.io.Serializable;
import java.util.Locale;

/**
 * When a training loop saves its state, how many checkpoints it keeps, and what it does when the previous upload is
 * still running. {@code checkpoint: { every_steps, every_seconds, keep, when_busy, resume, write_timeout_seconds }} in
 * a {@code train} step.
 *
 * @param everySteps save every this many steps; 0 = not by steps
 * @param everySeconds save when this many seconds passed since the last save; 0 = not by time
 * @param keep complete checkpoints kept (older ones are deleted once a newer one is complete)
 * @param whenBusy what a due checkpoint does while the previous one is still being written
 * @param resume start from the newest valid checkpoint, or ignore existing ones and start fresh
 * @param writeTimeoutSeconds a checkpoint not written within this many seconds is abandoned ({@link CheckpointWriter})
 */
public record CheckpointPolicy(long everySteps, double everySeconds, int keep, WhenBusy whenBusy, Resume resume,
    double writeTimeoutSeconds) implements Serializable {
  private static final long serialVersionUID = 1L;
  public static final int DEFAULT_KEEP = 2;
  /**
   * The write timeout of a step whose {@code timeout_seconds} is the default 120: half of it (see
   * {@link #defaultWriteTimeoutSeconds}).
   */
  public static final double DEFAULT_WRITE_TIMEOUT_SECONDS = 60;

  /** A due checkpoint while the previous upload is in flight. */
  public enum WhenBusy {
    /** Training waits for the upload, then saves: the interval holds, at the cost of a pause. */
    WAIT,
    /** The checkpoint is skipped (logged): training never waits; the next due one is saved. */
    SKIP
  }

  /** What a start does with existing checkpoints. */
  public enum Resume {
    /** Continue from the newest checkpoint whose manifest verifies. */
    LATEST,
    /** Ignore existing checkpoints (they are replaced as new ones are written). */
    FRESH
  }

  public CheckpointPolicy {
    if (everySteps < 0 || everySeconds < 0 || !Double.isFinite(everySeconds)) {
      throw new IllegalArgumentException("every_steps and every_seconds must be positive");
    }
    if (everySteps == 0 && everySeconds == 0) {
      throw new IllegalArgumentException("every_steps or every_seconds must be set");
    }
    if (keep < 1) {
      throw new IllegalArgumentException("keep must be at least 1");
    }
    if (!(writeTimeoutSeconds > 0) || !Double.isFinite(writeTimeoutSeconds)) {
      throw new IllegalArgumentException("write_timeout_seconds must be above 0");
    }
  }

  /** A policy with the default write timeout. */
  public CheckpointPolicy(long everySteps, double everySeconds, int keep, WhenBusy whenBusy, Resume resume) {
    this(everySteps, everySeconds, keep, whenBusy, resume, DEFAULT_WRITE_TIMEOUT_SECONDS);
  }

  /**
   * The write timeout when the step sets none: half the step's {@code timeout_seconds}, how long a worker waits for its
   * peers. Rank 0 writes the checkpoints, and while it waits for one (when_busy: wait, or the last one at the end) the
   * other ranks wait for it in the next collective: a write abandoned within half their patience leaves them the other
   * half for the step itself, so a silent store never makes them give up on a live rank 0.
   */
  public static double defaultWriteTimeoutSeconds(double collectiveTimeoutSeconds) {
    return collectiveTimeoutSeconds / 2;
  }

  /** The write timeout as a duration (at least a millisecond). */
  public java.time.Duration writeTimeout() {
    return java.time.Duration.ofMillis(Math.max(1, Math.round(writeTimeoutSeconds * 1000)));
  }

  /** Whether a checkpoint is due after {@code step}, given the step and time of the last save (or of the start). */
  public boolean due(long step, long lastStep, long nanosSinceLast) {
    return (everySteps > 0 && step - lastStep >= everySteps)
        || (everySeconds > 0 && nanosSinceLast >= everySeconds * 1e9);
  }

  static <E extends Enum<E>> E parse(Class<E> type, String value) {
    for (E e : type.getEnumConstants()) {
      if (e.name().equalsIgnoreCase(value)) {
        return e;
      }
    }
    StringBuilder names = new StringBuilder();
    for (E e : type.getEnumConstants()) {
      names.append(names.length() == 0 ? "" : ", ").append(e.name().toLowerCase(Locale.ROOT));
    }
    throw new IllegalArgumentException("'" + value + "' (expected one of: " + names + ")");
  }

  public static WhenBusy whenBusy(String value) {
    return parse(WhenBusy.class, value);
  }

  public static Resume resume(String value) {
    return parse(Resume.class, value);
  }
}
