package dev.stagecraft.training.collective;

import static java.util.Objects.requireNonNull;

import java.util.List;

/**
 * Why a communicator stopped working, as seen by the rank that detected it ({@code originRank}). Travels to the
 * neighbours in abort frames, so that every rank can report the original cause instead of "my neighbour hung up".
 *
 * @param reason what went wrong, phrased from {@code originRank}'s point of view ("no data from rank 2 within 30s")
 * @param ranks the ranks the failure is attributed to
 */
record Failure(Kind kind, int originRank, List<Integer> ranks, String reason) {
  enum Kind {
    /** A neighbour disconnected, failed, or sent unexpected data. */
    ERROR,
    /** A neighbour did not answer within the timeout. */
    TIMEOUT,
    /** {@code originRank} closed its communicator (orderly, no error of its own). */
    CLOSED
  }

  Failure {
    requireNonNull(kind, "kind is null");
    ranks = List.copyOf(ranks);
    requireNonNull(reason, "reason is null");
  }

  static Failure error(int originRank, List<Integer> ranks, String reason) {
    return new Failure(Kind.ERROR, originRank, ranks, reason);
  }

  static Failure timeout(int originRank, List<Integer> ranks, String reason) {
    return new Failure(Kind.TIMEOUT, originRank, ranks, reason);
  }

  /** {@code localRank} received a frame from rank {@code from} that failed its integrity check ({@link FrameSeal}). */
  static Failure integrity(int localRank, int from, String address, String what) {
    return error(localRank, List.of(from), "frame from rank " + from + " (" + address + ") failed its integrity "
        + "check" + (what == null ? "" : " (" + what + ")") + ": altered or forged on the way, its data not used");
  }

  static Failure closed(int originRank) {
    return new Failure(Kind.CLOSED, originRank, List.of(originRank), "closed its communicator");
  }

  /** The reason as rank {@code localRank} reports it. */
  String describeAt(int localRank) {
    if (kind == Kind.CLOSED) {
      return originRank == localRank
          ? "the communicator of rank " + localRank + " was closed"
          : "rank " + originRank + " closed its communicator";
    }
    return originRank == localRank ? reason : "rank " + originRank + " reported: " + reason;
  }

  /** An exception for rank {@code localRank} whose message is {@code prefix + ": " + describeAt(localRank)}. */
  CollectiveException toException(String prefix, int localRank, Throwable cause) {
    String message = prefix + ": " + describeAt(localRank);
    List<Integer> blamed = kind == Kind.CLOSED && originRank == localRank ? List.of() : ranks;
    return kind == Kind.TIMEOUT
        ? new CollectiveTimeoutException(message, blamed, cause)
        : new CollectiveException(message, blamed, cause);
  }
}
