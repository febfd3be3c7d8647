package dev.stagecraft.training.collective;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.List;

/**
 * Collective operations among the ranks of one training run, over authenticated TCP connections in a ring (each
 * rank sends to rank + 1 and receives from rank - 1, modulo the world size).
 *
 * <p><b>Contract.</b> Every rank calls the same operations in the same order with matching arguments (same array
 * length; same root). Each frame on the wire carries the operation, its sequence number and the caller's
 * arguments, so a rank that calls something else is detected and reported as out of sync, naming the rank, rather
 * than producing silently wrong numbers.
 *
 * <p><b>Failures.</b> Every blocking wait is bounded by {@link GroupSpec#operationTimeout()}: expiry throws a
 * {@link CollectiveTimeoutException} naming the operation and the rank that did not answer. A neighbour that closes
 * its connection, dies or sends unexpected frames causes a {@link CollectiveException} naming it. A rank that fails
 * tells both of its neighbours why (best effort), so the ranks further away report the original cause, e.g.
 * "rank 0 reported: no data from rank 2 within 30s". After any such failure the communicator is unusable: later
 * calls throw at once, and the contents of an array being reduced or broadcast are unspecified. Invalid arguments
 * (null array, root out of range) throw {@link IllegalArgumentException} or {@link NullPointerException} before any
 * I/O and do not break the communicator.
 *
 * <p><b>Threading.</b> A communicator is used by one thread at a time; it is not safe for concurrent operations.
 * {@link #close()} may be called from any thread, also to abort an operation blocked in another thread. The caller's
 * thread does the sending and the receiving of an operation (alternating one chunk each way, so neighbours never
 * deadlock on full socket buffers); each communicator of two or more ranks adds one daemon thread of its own, a
 * watcher that reads abort notices from the next rank.
 */
public interface Communicator extends AutoCloseable {
  /** Minimum length of the per-run secret. */
  int MIN_SECRET_BYTES = 16;

  /** Largest payload one rank may contribute to {@link #allGather(byte[])}. */
  int MAX_ALL_GATHER_BYTES = 1 << 20;

  /**
   * Opens a listening socket on an ephemeral port of {@code bindAddress}, with the large receive buffer that
   * accepted connections inherit. Publish {@code bindAddress:getLocalPort()} as this rank's {@link PeerAddress},
   * then hand the socket to {@link #connect}.
   *
   * @throws IOException if the socket cannot be bound
   */
  static ServerSocket listen(InetAddress bindAddress) throws IOException {
    return RingConnector.listen(bindAddress);
  }

  /**
   * Connects this rank to its ring neighbours and authenticates them, blocking until both connections are
   * established or {@link GroupSpec#connectTimeout()} expires. Every connection is authenticated in both directions
   * with an HMAC-SHA256 challenge–response over {@code secret}, the group id, the world size, both ranks and the
   * frame integrity mode ({@link FrameIntegrity#DEFAULT} here); a
   * connection that fails (stranger, wrong secret, wrong group, unexpected rank) is closed and logged at WARN, and
   * this rank keeps waiting for the legitimate peer.
   *
   * @param server this rank's bound listening socket, whose port is {@code spec.peers().get(spec.rank()).port()};
   *     the communicator takes it over and closes it before this method returns or throws
   * @param spec the group, this rank, all ranks' addresses and the timeout
   * @param secret the per-run secret shared by all ranks, at least {@value #MIN_SECRET_BYTES} bytes; it is not
   *     kept after this method returns and is never logged
   * @throws IllegalArgumentException if the secret is too short or the socket is unbound or on another port
   * @throws CollectiveTimeoutException if a neighbour did not connect or answer in time; names it
   * @throws CollectiveException if the connection setup fails otherwise
   */
  static Communicator connect(ServerSocket server, GroupSpec spec, byte[] secret) {
    return connect(server, spec, secret, FrameIntegrity.DEFAULT);
  }

  /**
   * As {@link #connect(ServerSocket, GroupSpec, byte[])}, with the frames after the handshake protected as
   * {@code integrity} says (every rank of the group must pass the same; a neighbour with another is refused). Under
   * {@link FrameIntegrity#MAC} and {@link FrameIntegrity#ENCRYPT} a frame altered, injected, replayed or reordered on
   * the way fails the operation with a {@link CollectiveException} naming the rank it claims to come from, and its
   * data is not used.
   */
  static Communicator connect(ServerSocket server, GroupSpec spec, byte[] secret, FrameIntegrity integrity) {
    return RingConnector.connect(server, spec, secret, integrity);
  }

  /** This rank, {@code 0 <= rank() < worldSize()}. */
  int rank();

  /** The number of ranks in the group. */
  int worldSize();

  /**
   * Replaces {@code data} on every rank by the element-wise sum over all ranks. Ring reduce-scatter then
   * all-gather, pipelined in chunks of 1 MiB: each rank sends and receives about {@code 2 (n-1)/n} times the
   * array. All ranks end with bit-identical arrays (each element is summed once, by one rank, in ring order).
   * Works for any length, including 0; with one rank it does nothing.
   *
   * @throws NullPointerException if {@code data} is null
   * @throws CollectiveTimeoutException if a rank does not answer in time
   * @throws CollectiveException if a rank fails, disconnects or is out of sync (including a rank that passed an
   *     array of another length: the message names it and both lengths)
   * @throws IllegalStateException if this communicator was closed
   */
  void allReduceSum(float[] data);

  /**
   * Like {@link #allReduceSum(float[])}, then divides every element by {@link #worldSize()}: the average of the
   * ranks' arrays (for example of their gradients). All ranks must call the mean, not a mix of mean and sum.
   *
   * @throws CollectiveTimeoutException if a rank does not answer in time
   * @throws CollectiveException if a rank fails, disconnects or is out of sync
   * @throws IllegalStateException if this communicator was closed
   */
  void allReduceMean(float[] data);

  /**
   * Copies {@code data} of rank {@code root} into {@code data} of every other rank, pipelined along the ring. When it
   * returns on the root, every rank has received the data.
   *
   * @throws IllegalArgumentException if {@code root} is not a rank
   * @throws CollectiveTimeoutException if a rank does not answer in time
   * @throws CollectiveException if a rank fails, disconnects, or is out of sync (another root or length)
   * @throws IllegalStateException if this communicator was closed
   */
  void broadcast(float[] data, int root);

  /**
   * Returns once every rank has called {@code barrier()}.
   *
   * @throws CollectiveTimeoutException if a rank does not arrive in time
   * @throws CollectiveException if a rank fails, disconnects or is out of sync
   * @throws IllegalStateException if this communicator was closed
   */
  void barrier();

  /**
   * Gathers one small byte array from every rank (for metadata such as row counts), index = rank. Lengths may
   * differ between ranks. The returned list is immutable; the arrays are copies the caller may keep.
   *
   * @throws IllegalArgumentException if {@code data} is longer than {@value #MAX_ALL_GATHER_BYTES} bytes
   * @throws CollectiveTimeoutException if a rank does not answer in time
   * @throws CollectiveException if a rank fails, disconnects or is out of sync
   * @throws IllegalStateException if this communicator was closed
   */
  List<byte[]> allGather(byte[] data);

  /** Where this rank waited in its collectives so far (the ring measures it; others report none). */
  default WaitTimes waits() {
    return WaitTimes.none(rank());
  }

  /**
   * Tells the neighbours this rank is leaving, closes the connections and stops the communicator's threads. Never
   * throws: failures while closing are logged. Idempotent; callable from any thread. An operation blocked in another
   * thread fails with a {@link CollectiveException}; the neighbours' next or current operation fails with a message
   * that this rank closed its communicator.
   */
  @Override
  void close();
}
