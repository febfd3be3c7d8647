package dev.stagecraft.training.collective;

import java.io.IOException;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@link PipeLinks} over the connections {@link RingConnector} sets up for {@link Channel#PIPELINE}: a {@link PipeLink}
 * to the previous stage (which connected to this one) and one to the next (to which this one connected), each absent
 * at its end of the pipeline. This class checks arguments, turns failures into exceptions, and records the first
 * failure: it tells both neighbours (best effort) and closes both links.
 */
final class TcpPipeLinks implements PipeLinks {
  private static final Logger LOG = LoggerFactory.getLogger(TcpPipeLinks.class);
  /** How long a failing rank waits for its abort notice to go out before it closes the connections. */
  static final long ABORT_GRACE_MILLIS = 200;
  /** Longest {@link #close()} waits for a message being sent to go out before its notice. */
  private static final long MAX_CLOSE_DRAIN_MILLIS = 5_000;

  @FunctionalInterface
  private interface Call {
    void run();
  }

  private final int rank;
  private final int worldSize;
  private final String self;
  private final long drainMillis;
  private final PipeLink previous;
  private final PipeLink next;
  private final AtomicReference<Failure> failure = new AtomicReference<>();
  private final AtomicBoolean closed = new AtomicBoolean();
  private final LongAdder bytesSent = new LongAdder();
  private final LongAdder receiveWaitNanos = new LongAdder();

  static PipeLinks connect(ServerSocket server, GroupSpec spec, byte[] secret, FrameIntegrity integrity,
      long maxQueuedBytes) {
    if (maxQueuedBytes < Wire.CHUNK_BYTES) {
      RingConnector.closeQuietly(server, "listening socket");
      throw new IllegalArgumentException("Invalid queue limit: " + maxQueuedBytes + " bytes (expected at least "
          + Wire.CHUNK_BYTES + ", one frame)");
    }
    RingConnector.Neighbours links =
        RingConnector.connectNeighbours(server, spec, secret, integrity, Channel.PIPELINE);
    try {
      return new TcpPipeLinks(spec, links, maxQueuedBytes);
    } catch (IOException | RuntimeException e) {
      links.closeQuietly();
      throw new CollectiveException("Cannot connect " + describe(spec) + ": " + e.getMessage(), List.of(), e);
    }
  }

  private TcpPipeLinks(GroupSpec spec, RingConnector.Neighbours links, long maxQueuedBytes) throws IOException {
    this.rank = spec.rank();
    this.worldSize = spec.worldSize();
    this.self = describe(spec);
    this.drainMillis = Math.min(spec.operationTimeout().toMillis(), MAX_CLOSE_DRAIN_MILLIS);
    // This stage accepted the previous one (server of that connection) and connected to the next (client).
    this.previous = links.fromPrevious() == null ? null
        : new PipeLink(this, spec, rank - 1, links.fromPrevious(), links.previousSession(), false, maxQueuedBytes);
    try {
      this.next = links.toNext() == null ? null
          : new PipeLink(this, spec, rank + 1, links.toNext(), links.nextSession(), true, maxQueuedBytes);
    } catch (IOException | RuntimeException e) {
      if (previous != null) {
        previous.shutDown(); // its selectors; the caller closes the sockets
      }
      throw e;
    }
    for (PipeLink link : links()) {
      link.start();
    }
  }

  private static String describe(GroupSpec spec) {
    return "rank " + spec.rank() + " of " + spec.worldSize() + " in group '" + spec.groupId() + "'";
  }

  @Override
  public int rank() {
    return rank;
  }

  @Override
  public int worldSize() {
    return worldSize;
  }

  @Override
  public void sendNext(int tag, float[] data, int length) {
    PipeLink link = link("sendNext", next, data, length);
    run("sendNext", tag, () -> link.send(tag, data, length));
  }

  @Override
  public void receivePrevious(int tag, float[] data, int length) {
    PipeLink link = link("receivePrevious", previous, data, length);
    run("receivePrevious", tag, () -> link.receive(tag, data, length));
  }

  @Override
  public void sendPrevious(int tag, float[] data, int length) {
    PipeLink link = link("sendPrevious", previous, data, length);
    run("sendPrevious", tag, () -> link.send(tag, data, length));
  }

  @Override
  public void receiveNext(int tag, float[] data, int length) {
    PipeLink link = link("receiveNext", next, data, length);
    run("receiveNext", tag, () -> link.receive(tag, data, length));
  }

  @Override
  public long bytesSent() {
    return bytesSent.sum();
  }

  @Override
  public long receiveWaitNanos() {
    return receiveWaitNanos.sum();
  }

  void countSent(long bytes) {
    bytesSent.add(bytes);
  }

  void countWait(long nanos) {
    receiveWaitNanos.add(nanos);
  }

  /** The link a call uses, after checking its arguments (before any I/O, without breaking the links). */
  private PipeLink link(String call, PipeLink link, float[] data, int length) {
    if (link == null) {
      boolean toNext = call.endsWith("Next");
      throw new IllegalArgumentException("Cannot " + call + " on " + self + ": it is the " + (toNext ? "last" : "first")
          + " stage (there is no " + (toNext ? "next" : "previous") + " rank)");
    }
    if (data == null) {
      throw new IllegalArgumentException("Invalid data for " + call + ": null");
    }
    if (length < 0 || length > data.length) {
      throw new IllegalArgumentException("Invalid length for " + call + ": " + length + " (expected 0.." + data.length
          + ", the array's length)");
    }
    return link;
  }

  private void run(String call, int tag, Call body) {
    String name = call + "(tag " + tag + ")";
    if (closed.get()) {
      throw new IllegalStateException("Cannot run " + name + ": the pipeline links of " + self + " are closed");
    }
    Failure earlier = failure.get();
    if (earlier != null) {
      throw exception("Cannot run " + name + ": the pipeline links of " + self + " failed earlier", earlier);
    }
    try {
      body.run();
    } catch (PipeLink.FailureSignal e) {
      throw exception("Cannot complete " + name, fail(e.failure));
    }
  }

  private CollectiveException exception(String prefix, Failure f) {
    if (f.kind() == Failure.Kind.CLOSED && f.originRank() == rank) {
      return new CollectiveException(prefix + ": the pipeline links of rank " + rank + " were closed", List.of());
    }
    return f.toException(prefix, rank, null);
  }

  /** The failure recorded first, or null. */
  Failure failure() {
    return failure.get();
  }

  /** Why a link was closed under a waiting thread: the failure or close recorded before. */
  Failure stoppedBy() {
    Failure f = failure.get();
    return f != null ? f : closedFailure();
  }

  private Failure closedFailure() {
    return new Failure(Failure.Kind.CLOSED, rank, List.of(rank), "closed its pipeline links");
  }

  /** Throws the signal of a recorded failure, or of an interrupt of the calling thread. */
  void checkRunning(String doing) {
    Failure f = failure.get();
    if (f != null) {
      throw new PipeLink.FailureSignal(f);
    }
    if (Thread.currentThread().isInterrupted()) {
      throw new PipeLink.FailureSignal(Failure.error(rank, List.of(), "interrupted while " + doing));
    }
  }

  /**
   * Makes {@code f} the links' failure if it is the first: tells both neighbours (best effort) and closes the
   * connections, which wakes every waiting thread. Returns the failure recorded first.
   */
  Failure fail(Failure f) {
    if (!failure.compareAndSet(null, f)) {
      return failure.get();
    }
    LOG.warn("Pipeline failure on {}: {}", self, f.describeAt(rank));
    tellNeighbours(f, ABORT_GRACE_MILLIS);
    for (PipeLink link : links()) {
      link.shutDown();
    }
    return f;
  }

  /**
   * Sends each neighbour a notice of {@code f}, waiting up to {@code millis} for a message being sent to go out. The
   * calling thread's interrupt (the failure may be that interrupt) is set aside meanwhile, or the wait would end at
   * once and the neighbours would learn only that the connection ended.
   */
  private void tellNeighbours(Failure f, long millis) {
    boolean interrupted = Thread.interrupted();
    try {
      byte[] notice = Wire.abortFrame(f, 0);
      for (PipeLink link : links()) {
        link.sendNotice(notice, millis);
      }
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    Failure mine = closedFailure();
    if (failure.compareAndSet(null, mine) && !links().isEmpty()) {
      LOG.info("Closing the pipeline links of {}", self);
      // Orderly: after the message being sent, if any (another thread may still send), the notice, then the kernel
      // delivers what it holds.
      tellNeighbours(mine, drainMillis);
    }
    for (PipeLink link : links()) {
      link.shutDown();
    }
    for (PipeLink link : links()) {
      if (!link.awaitReader(1_000)) {
        LOG.warn("Closing {}: its reader of {} did not stop within 1 s", self, link.peerName);
      }
    }
  }

  private List<PipeLink> links() {
    List<PipeLink> links = new ArrayList<>(2);
    if (previous != null) {
      links.add(previous);
    }
    if (next != null) {
      links.add(next);
    }
    return links;
  }

  @Override
  public String toString() {
    return "TcpPipeLinks[" + self + "]";
  }
}
