package dev.stagecraft.training.collective;

import java.nio.charset.StandardCharsets;

/**
 * What a connection between two ranks is for: the ring of a {@link Communicator} or a link between neighbouring
 * stages of {@link PipeLinks}. Both use the same handshake ({@link Handshake}) and connection setup
 * ({@link RingConnector}); the channel says whom a rank accepts and connects to, and its labels go into the handshake's
 * proofs and the frame keys, so that a connection of one kind never authenticates as the other, even within one group
 * under one secret (a ring rank that reaches a pipeline socket is refused before any frame is read).
 */
enum Channel {
  /** Rank r accepts rank r-1 and connects to rank r+1, modulo the world size; a group of one has no connections. */
  RING("stagecraft-collective-v1", "stagecraft-frames-v1", "the previous rank in the ring"),
  /** Stage s accepts stage s-1 and connects to stage s+1, where they exist: a chain, no wrap-around. */
  PIPELINE("stagecraft-pipeline-v1", "stagecraft-pipeline-frames-v1", "the previous stage of the pipeline");

  private final byte[] proofLabel;
  private final String frameLabel;
  private final String predecessor;

  Channel(String proofLabel, String frameLabel, String predecessor) {
    this.proofLabel = proofLabel.getBytes(StandardCharsets.US_ASCII);
    this.frameLabel = frameLabel;
    this.predecessor = predecessor;
  }

  /** Prefixes every handshake proof (the ring's is the label it always had, so its proofs are unchanged). */
  byte[] proofLabel() {
    return proofLabel.clone();
  }

  /** Prefixes the info of every frame key (HKDF-Expand). */
  String frameLabel() {
    return frameLabel;
  }

  /** Whom a rank accepts, for the message refusing another rank: "the previous rank in the ring". */
  String predecessor() {
    return predecessor;
  }

  /** The rank {@code spec.rank()} accepts a connection from, or -1 if none. */
  int previous(GroupSpec spec) {
    return switch (this) {
      case RING -> spec.worldSize() == 1 ? -1 : spec.previous();
      case PIPELINE -> spec.rank() - 1;
    };
  }

  /** The rank {@code spec.rank()} connects to, or -1 if none. */
  int next(GroupSpec spec) {
    return switch (this) {
      case RING -> spec.worldSize() == 1 ? -1 : spec.next();
      case PIPELINE -> spec.rank() + 1 < spec.worldSize() ? spec.rank() + 1 : -1;
    };
  }
}
