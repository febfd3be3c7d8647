package dev.stagecraft.training.collective;

import java.net.ServerSocket;

/**
 * Point-to-point links between the neighbouring stages of one pipeline: a model's layers split into P stages on P
 * ranks, stage s sends activations forward to s+1 and receives their gradients back from s+1, micro-batch by
 * micro-batch. Same transport as the {@link Communicator}'s ring: authenticated TCP connections (HMAC
 * challenge–response over the per-run secret, group id, world size, both ranks and the frame integrity mode; strangers
 * are refused and logged while the rank keeps waiting for its neighbour), frames protected as {@link FrameIntegrity}
 * says, every wait bounded by {@link GroupSpec#operationTimeout()}.
 *
 * <p><b>Messages.</b> Each send is one message: a tag and {@code length} floats. The receiver names the tag and
 * length it expects; messages of one direction of one link arrive in the order they were sent, and a message with
 * another tag or length fails the receive as <em>out of sync</em>, naming the sender and both tags and lengths,
 * rather than filling the array with the wrong data.
 *
 * <p><b>Buffering.</b> One TCP connection per neighbouring pair, used in both directions. Sends run on the caller's
 * thread; a reader thread per connection takes incoming data off the socket at once and queues it until a receive
 * call takes it, so two neighbours that send each other large arrays at the same moment (as 1F1B schedules do) never
 * deadlock. At most {@link #MAX_QUEUED_BYTES} of received data wait per link: beyond that the reader stops reading,
 * TCP holds the sender back, and its send waits until the receiver takes data — at most the operation timeout, then
 * it fails naming the receiver and the limit. Two neighbours that each send more than the limit before receiving
 * therefore fail after the operation timeout instead of completing.
 *
 * <p><b>Failures.</b> A receive that waits longer than the operation timeout throws a {@link
 * CollectiveTimeoutException} naming the sender and its address ("no data from rank 1 (10.0.0.12:33931) within
 * 10s"); a send whose receiver takes no data for as long, likewise. A neighbour that closed its links, died, or sent
 * a frame that fails its integrity check causes a {@link CollectiveException} naming it (a neighbour that closed
 * after sending is named only once its data is taken). A stage that fails tells both neighbours why (best effort),
 * so the stages further away report the original cause ("rank 2 reported: …"). After any failure the links are
 * unusable: later calls throw at once. Invalid arguments throw {@link IllegalArgumentException} before any I/O and do
 * not break the links.
 *
 * <p><b>Threading.</b> Calls may come from several threads (for example one sending activations forward while another
 * receives gradients); calls on the same direction of the same link are served one message at a time. {@link
 * #close()} may be called from any thread, also to abort a call blocked in another.
 */
public interface PipeLinks extends AutoCloseable {
  /**
   * Most bytes of received data that wait per link for a receive call to take them (256 MiB): generous enough for a
   * stage to run several large activations ahead, bounded so a runaway sender cannot exhaust the heap.
   */
  long MAX_QUEUED_BYTES = 256L << 20;

  /**
   * Connects this stage to its neighbours and authenticates them, blocking until both are connected or {@link
   * GroupSpec#connectTimeout()} expires.
   *
   * @param server this rank's listening socket from {@link Communicator#listen}, whose port is
   *     {@code spec.peers().get(spec.rank()).port()}; taken over and closed before this method returns or throws
   * @param spec {@code spec.peers()}: the P stages of one pipeline in order; {@code spec.rank()}: this stage. Links
   *     only between s and s+1 (no wrap): stage s connects to s+1's listening socket. P = 1: no links
   * @param secret the per-run secret, at least {@value Communicator#MIN_SECRET_BYTES} bytes; not kept, never logged
   * @param integrity how frames are protected; every stage must pass the same (a neighbour with another is refused)
   * @throws IllegalArgumentException if the secret is too short or the socket is unbound or on another port
   * @throws CollectiveTimeoutException if a neighbour did not connect or answer in time; names it
   * @throws CollectiveException if the connection setup fails otherwise (for example a neighbour refused this rank)
   */
  static PipeLinks connect(ServerSocket server, GroupSpec spec, byte[] secret, FrameIntegrity integrity) {
    return TcpPipeLinks.connect(server, spec, secret, integrity, MAX_QUEUED_BYTES);
  }

  /** This stage, {@code 0 <= rank() < worldSize()}. */
  int rank();

  /** The number of stages. */
  int worldSize();

  /**
   * Sends {@code data[0..length)} as message {@code tag} to rank + 1 (activations). Returns once the data is handed to
   * the connection (the receiver may not have taken it yet).
   *
   * @throws IllegalArgumentException if this is the last stage, {@code data} is null or {@code length} is negative
   *     or larger than {@code data.length}
   * @throws CollectiveTimeoutException if rank + 1 takes no data within the operation timeout
   * @throws CollectiveException if rank + 1 closed, died, or the links failed earlier
   * @throws IllegalStateException if these links were closed
   */
  void sendNext(int tag, float[] data, int length);

  /**
   * Receives message {@code tag} of {@code length} floats from rank - 1 into {@code data[0..length)}.
   *
   * @throws IllegalArgumentException if this is the first stage, {@code data} is null or {@code length} is negative
   *     or larger than {@code data.length}
   * @throws CollectiveTimeoutException if no data comes from rank - 1 within the operation timeout
   * @throws CollectiveException if the next message has another tag or length (out of sync), or rank - 1 closed,
   *     died or sent a frame that fails its integrity check, or the links failed earlier
   * @throws IllegalStateException if these links were closed
   */
  void receivePrevious(int tag, float[] data, int length);

  /** As {@link #sendNext}, to rank - 1 (gradients); not on the first stage. */
  void sendPrevious(int tag, float[] data, int length);

  /** As {@link #receivePrevious}, from rank + 1; not on the last stage. */
  void receiveNext(int tag, float[] data, int length);

  /** Payload bytes sent so far (4 per float; headers and integrity tags not counted). */
  long bytesSent();

  /**
   * Nanoseconds the receive calls have spent blocked waiting for data so far, over all threads; the pipeline bubble
   * is measured from it.
   */
  long receiveWaitNanos();

  /**
   * Tells the neighbours this stage is leaving (their waits on it then fail naming this rank, once they have taken
   * what it sent before), closes the connections and stops the reader threads. Never throws; idempotent; callable
   * from any thread: a call blocked in another thread fails with a {@link CollectiveException}.
   */
  @Override
  void close();
}
