package dev.stagecraft.training.collective;

import static java.util.Objects.requireNonNull;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Who a {@link Communicator} is and whom it talks to: the group (one per training run, e.g. the step's run id plus
 * attempt), this rank, every rank's listening address (index = rank) and the two timeouts.
 *
 * <p>The per-run secret is deliberately not part of this record, so that it never ends up in a {@code toString()},
 * a log line or a serialized task closure by accident; it is passed to {@link Communicator#connect} on its own.
 *
 * @param groupId identifies the run; peers of another group are rejected during the handshake
 * @param rank this rank, {@code 0 <= rank < peers.size()}
 * @param peers every rank's listening address, index = rank; no two ranks share an address
 * @param connectTimeout bound on the whole connection setup: how late the neighbours may start (tasks of a barrier
 *     stage start at slightly different times)
 * @param operationTimeout bound on every wait inside a collective (for data from the previous rank, for the next
 *     rank to take data): it must cover the compute skew between ranks, since a rank waits there for the slowest
 */
public record GroupSpec(
    String groupId, int rank, List<PeerAddress> peers, Duration connectTimeout, Duration operationTimeout) {
  /** Longest group id, in UTF-8 bytes (it travels in the handshake). */
  public static final int MAX_GROUP_ID_BYTES = 256;

  public GroupSpec {
    requireNonNull(groupId, "groupId is null");
    requireNonNull(peers, "peers is null");
    requireNonNull(connectTimeout, "connectTimeout is null");
    requireNonNull(operationTimeout, "operationTimeout is null");
    if (groupId.isBlank() || groupId.getBytes(StandardCharsets.UTF_8).length > MAX_GROUP_ID_BYTES) {
      throw new IllegalArgumentException(
          "Invalid group id: '" + groupId + "' (expected 1.." + MAX_GROUP_ID_BYTES + " UTF-8 bytes, not blank)");
    }
    peers = List.copyOf(peers);
    if (peers.isEmpty()) {
      throw new IllegalArgumentException("Invalid peers for group '" + groupId + "': empty (expected one per rank)");
    }
    if (rank < 0 || rank >= peers.size()) {
      throw new IllegalArgumentException(
          "Invalid rank: " + rank + " (expected 0.." + (peers.size() - 1) + " for " + peers.size() + " peers)");
    }
    Map<PeerAddress, Integer> seen = new HashMap<>();
    for (int r = 0; r < peers.size(); r++) {
      Integer other = seen.putIfAbsent(peers.get(r), r);
      if (other != null) {
        throw new IllegalArgumentException("Invalid peers for group '" + groupId + "': ranks " + other + " and " + r
            + " share the address " + peers.get(r) + " (expected one listening socket per rank)");
      }
    }
    checkTimeout("connect timeout", connectTimeout);
    checkTimeout("operation timeout", operationTimeout);
  }

  /** The same timeout for connecting and for operations. */
  public GroupSpec(String groupId, int rank, List<PeerAddress> peers, Duration timeout) {
    this(groupId, rank, peers, timeout, timeout);
  }

  private static void checkTimeout(String what, Duration timeout) {
    if (timeout.isNegative() || timeout.isZero() || timeout.compareTo(Duration.ofMillis(Integer.MAX_VALUE)) > 0) {
      throw new IllegalArgumentException(
          "Invalid " + what + ": " + timeout + " (expected more than 0 and at most " + Integer.MAX_VALUE + " ms)");
    }
  }

  /** The number of ranks. */
  public int worldSize() {
    return peers.size();
  }

  /** The rank this one sends to in the ring. */
  int next() {
    return (rank + 1) % worldSize();
  }

  /** The rank this one receives from in the ring. */
  int previous() {
    return (rank + worldSize() - 1) % worldSize();
  }
}
