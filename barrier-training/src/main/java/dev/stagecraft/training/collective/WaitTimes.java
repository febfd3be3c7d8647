package dev.stagecraft.training.collective;

import java.io.Serializable;

/**
 * Where one rank of a ring waited in its collectives, split by whom it waited on, so that a slow rank or a slow link
 * can be told from the ranks that merely waited for it.
 *
 * @param previous the rank this rank receives from
 * @param next the rank this rank sends to
 * @param beforeFrameSeconds waiting for a frame from {@code previous} to start: {@code previous} (or someone before it)
 *     was not ready yet
 * @param inFrameSeconds waiting for the rest of a frame that had started to arrive: the link from {@code previous} is
 *     slow
 * @param sendingSeconds waiting for {@code next} to take data: the link to {@code next} is slow, or {@code next} does
 *     not read
 */
public record WaitTimes(int previous, int next, double beforeFrameSeconds, double inFrameSeconds,
    double sendingSeconds) implements Serializable {
  private static final long serialVersionUID = 1L;

  /** A rank alone, or a communicator that does not measure. */
  public static WaitTimes none(int rank) {
    return new WaitTimes(rank, rank, 0, 0, 0);
  }

  /** How much of this rank's waiting points at the link from {@code previous} (a frame in flight) or to {@code next}. */
  public double onLinksSeconds() {
    return inFrameSeconds + sendingSeconds;
  }
}
