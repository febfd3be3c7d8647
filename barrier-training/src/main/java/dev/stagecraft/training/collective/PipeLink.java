package dev.stagecraft.training.collective;

import java.io.EOFException;
import java.io.IOException;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.CancelledKeyException;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One authenticated connection of {@link TcpPipeLinks} to a neighbouring stage, used in both directions. Messages go
 * out as frames of at most {@link Wire#CHUNK_BYTES} ({@link Wire#PIPE_DATA}), written by the caller's thread on the
 * non-blocking channel (waiting in a selector, so a send has its timeout); a reader thread reads every frame as it
 * arrives, opens it ({@link FrameSeal}: nothing in a frame is believed before it opens) and queues its floats until
 * a receive call takes them, so both neighbours can send at once without either waiting for the other to receive.
 * Abort notices ({@link Wire#ABORT}) travel on the same stream, after the data sent before them.
 */
final class PipeLink {
  private static final Logger LOG = LoggerFactory.getLogger(PipeLink.class);
  /** Longest a sender sleeps in the selector before it checks for a failure recorded by another thread. */
  private static final long POLL_MILLIS = 100;

  /** Floats of one frame; {@code count} and {@code tag} are those of the message it belongs to. */
  private record Chunk(int message, int count, int tag, float[] floats) {}

  /** Unwinds a call with a failure; no stack trace, {@link TcpPipeLinks} turns it into a CollectiveException. */
  static final class FailureSignal extends RuntimeException {
    private static final long serialVersionUID = 1L;
    final transient Failure failure;

    FailureSignal(Failure failure) {
      super(failure.reason(), null, false, false);
      this.failure = failure;
    }
  }

  private final TcpPipeLinks owner;
  private final int rank;
  final int peer;
  /** "rank 2 (10.0.0.3:4711)": on a cluster, which host went silent is what the operator needs first. */
  final String peerName;
  private final String peerAddress;
  private final long timeoutNanos;
  private final String timeoutText;
  private final SocketChannel channel;
  private final FrameSeal sendSeal;
  private final FrameSeal receiveSeal;

  /** Held for a whole message (so concurrent senders never interleave frames) and for abort notices. */
  private final ReentrantLock sendLock = new ReentrantLock();
  private final Selector writable;
  private final SelectionKey writeKey;
  private final ByteBuffer outBuffer;
  /** Messages sent so far (under {@link #sendLock}). */
  private int sent;
  /** A frame was abandoned half-written: nothing more may follow it, not even an abort notice. */
  private boolean torn;

  /** Held for a whole message, so concurrent receivers never take each other's chunks. */
  private final ReentrantLock receiveLock = new ReentrantLock();
  /** Messages received so far (under {@link #receiveLock}). */
  private int received;

  private final Thread reader;
  private final Selector readable;
  private final ByteBuffer inBuffer;
  private final long maxQueuedBytes;
  private final ReentrantLock queueLock = new ReentrantLock();
  /** Signalled when a chunk is queued or taken, the connection ends, or the links stop. */
  private final Condition changed = queueLock.newCondition();
  private final ArrayDeque<Chunk> queue = new ArrayDeque<>();
  private long queuedBytes;
  /** Why nothing more comes from the peer (it closed, or the connection broke); reported once the queue is empty. */
  private Failure ended;
  private volatile boolean stopping;

  /** {@code client}: this rank connected to the peer (it is the next stage), else it accepted the peer. */
  PipeLink(TcpPipeLinks owner, GroupSpec spec, int peer, Socket socket, Handshake.Session session, boolean client,
      long maxQueuedBytes) throws IOException {
    this.owner = owner;
    this.rank = spec.rank();
    this.peer = peer;
    this.peerAddress = spec.peers().get(peer).toString();
    this.peerName = "rank " + peer + " (" + peerAddress + ")";
    this.timeoutNanos = spec.operationTimeout().toNanos();
    this.timeoutText = Durations.format(spec.operationTimeout());
    this.maxQueuedBytes = maxQueuedBytes;
    this.sendSeal = FrameSeal.of(session.integrity(), client ? session.clientToServer() : session.serverToClient());
    this.receiveSeal = FrameSeal.of(session.integrity(), client ? session.serverToClient() : session.clientToServer());
    this.channel = socket.getChannel();
    if (channel == null) {
      throw new IllegalArgumentException("Cannot link to " + peerName + " on a socket without a channel");
    }
    channel.configureBlocking(false);
    this.writable = Selector.open();
    this.readable = Selector.open();
    this.writeKey = channel.register(writable, 0);
    channel.register(readable, SelectionKey.OP_READ);
    int frameBytes = Wire.HEADER_BYTES + Wire.MAX_PAYLOAD_BYTES + sendSeal.tagBytes();
    this.outBuffer = ByteBuffer.allocateDirect(frameBytes);
    this.inBuffer = ByteBuffer.allocateDirect(frameBytes);
    this.reader = new Thread(this::readLoop,
        "stagecraft-pipeline-" + spec.groupId() + "-r" + rank + "-from-r" + peer);
    reader.setDaemon(true);
  }

  void start() {
    reader.start();
  }

  // ---- sending (caller's thread) -------------------------------------------------------------------------------

  void send(int tag, float[] data, int length) {
    sendLock.lock();
    try {
      checkCanSend();
      int message = ++sent;
      int chunks = RingCommunicator.chunks(length);
      for (int c = 0; c < chunks; c++) {
        int offset = c * Wire.CHUNK_FLOATS;
        int n = Math.min(Wire.CHUNK_FLOATS, length - offset);
        outBuffer.clear();
        Wire.putHeader(outBuffer, Wire.PIPE_DATA, message, length, tag, n * Float.BYTES);
        Wire.encodeFloats(data, offset, n, outBuffer);
        outBuffer.flip();
        write(outBuffer);
        owner.countSent((long) n * Float.BYTES);
      }
    } finally {
      sendLock.unlock();
    }
  }

  private void checkCanSend() {
    owner.checkRunning("sending to rank " + peer);
    Failure gone = ended();
    if (gone != null) {
      throw new FailureSignal(gone);
    }
    if (torn) {
      throw new FailureSignal(Failure.error(rank, List.of(peer), "an earlier frame to " + peerName + " was cut off"));
    }
  }

  /** Seals the frame and writes it, waiting at most the operation timeout for the peer to take the data. */
  private void write(ByteBuffer frame) {
    sendSeal.seal(frame);
    long deadline = System.nanoTime() + timeoutNanos;
    try {
      while (frame.hasRemaining()) {
        if (channel.write(frame) == 0) {
          awaitWritable(deadline);
        }
      }
    } catch (IOException e) {
      throw new FailureSignal(sendFailure(e));
    } finally {
      if (frame.hasRemaining() && frame.position() > 0) {
        torn = true;
      } else if (frame.hasRemaining()) {
        sendSeal.withdraw(); // nothing of it went out: an abort notice takes its sequence number
      }
    }
  }

  private void awaitWritable(long deadline) throws IOException {
    long left = deadline - System.nanoTime();
    if (left <= 0) {
      throw new FailureSignal(Failure.timeout(rank, List.of(peer), peerName + " did not take data within "
          + timeoutText + " (it stopped reading, or holds " + (maxQueuedBytes >> 20) + " MiB from this rank that its "
          + "receive calls have not taken)"));
    }
    owner.checkRunning("sending to rank " + peer);
    try {
      writeKey.interestOps(SelectionKey.OP_WRITE);
      writable.select(Math.max(1, Math.min(TimeUnit.NANOSECONDS.toMillis(left), POLL_MILLIS)));
      writable.selectedKeys().clear();
      writeKey.interestOps(0);
    } catch (ClosedSelectorException | CancelledKeyException e) {
      throw new FailureSignal(owner.stoppedBy());
    }
  }

  /**
   * Why a write failed: the links' own failure or closing, else the peer's (it may have closed or failed just now:
   * its notice is read shortly, so wait a moment for the reader), else the error itself.
   */
  private Failure sendFailure(IOException e) {
    if (!stopping) {
      join(reader, TcpPipeLinks.ABORT_GRACE_MILLIS);
    }
    Failure own = owner.failure();
    if (own != null) {
      return own;
    }
    Failure gone = ended();
    return gone != null ? gone : Failure.error(rank, List.of(peer),
        "cannot send to " + peerName + ": " + RingConnector.describe(e));
  }

  /**
   * Best effort: tells the peer why this rank stops, after the message being sent, if any, is out within {@code
   * millis}; never after a frame abandoned half-written.
   */
  void sendNotice(byte[] notice, long millis) {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
    try {
      if (!sendLock.tryLock(millis, TimeUnit.MILLISECONDS)) {
        LOG.debug("Cannot tell {} that rank {} stopped: a message to it is still being sent", peerName, rank);
        return;
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return;
    }
    try {
      if (torn || !channel.isOpen()) {
        return;
      }
      if (!Wire.writeBefore(channel, sendSeal.sealedCopy(notice), deadline)) {
        LOG.debug("Cannot tell {} that rank {} stopped: it takes no data", peerName, rank);
      }
    } catch (IOException e) {
      LOG.debug("Cannot tell {} that rank {} stopped: {}", peerName, rank, RingConnector.describe(e));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      sendLock.unlock();
    }
  }

  // ---- receiving (caller's thread) -----------------------------------------------------------------------------

  void receive(int tag, float[] data, int length) {
    receiveLock.lock();
    try {
      int message = received + 1;
      int done = 0;
      for (int c = 0, chunks = RingCommunicator.chunks(length); c < chunks; c++) {
        Chunk chunk = take();
        if (chunk.message != message || chunk.tag != tag || chunk.count != length) {
          throw new FailureSignal(outOfSync(chunk, c, message, tag, length));
        }
        int n = Math.min(Wire.CHUNK_FLOATS, length - done);
        if (chunk.floats.length != n) {
          throw new FailureSignal(Failure.error(rank, List.of(peer), "out of sync with " + peerName + ": a chunk of "
              + chunk.floats.length + " floats in a message of " + length + ", expected " + n));
        }
        System.arraycopy(chunk.floats, 0, data, done, n);
        done += n;
      }
      received = message;
    } finally {
      receiveLock.unlock();
    }
  }

  private Failure outOfSync(Chunk got, int chunk, int message, int tag, int length) {
    String what = got.message != message
        ? "received message #" + got.message + (chunk > 0 ? " in the middle of" : " while this rank expects")
            + " message #" + message
        : "received tag " + got.tag + " with " + got.count + " floats while this rank expects tag " + tag + " with "
            + length + " floats";
    return Failure.error(rank, List.of(peer), "out of sync with " + peerName + ": " + what);
  }

  /** The next chunk from the peer, waiting at most the operation timeout for it. */
  private Chunk take() {
    long deadline = System.nanoTime() + timeoutNanos;
    queueLock.lock();
    try {
      while (queue.isEmpty()) {
        owner.checkRunning("receiving from rank " + peer);
        if (ended != null) {
          throw new FailureSignal(ended);
        }
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          throw new FailureSignal(Failure.timeout(rank, List.of(peer),
              "no data from " + peerName + " within " + timeoutText));
        }
        long t0 = System.nanoTime();
        try {
          changed.awaitNanos(left);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt(); // checkRunning reports it
        } finally {
          owner.countWait(System.nanoTime() - t0);
        }
      }
      Chunk chunk = queue.poll();
      queuedBytes -= (long) chunk.floats.length * Float.BYTES;
      changed.signalAll(); // the reader may wait for room
      return chunk;
    } finally {
      queueLock.unlock();
    }
  }

  private Failure ended() {
    queueLock.lock();
    try {
      return ended;
    } finally {
      queueLock.unlock();
    }
  }

  // ---- the reader thread ---------------------------------------------------------------------------------------

  private void readLoop() {
    try {
      while (readFrame()) {
        // until the peer stops, the connection ends or the links stop
      }
    } catch (ClosedSelectorException | IOException e) {
      if (!stopping) {
        end(e instanceof EOFException
            ? Failure.error(rank, List.of(peer), peerName + " closed its connection")
            : Failure.error(rank, List.of(peer), "connection with " + peerName + " failed: "
                + RingConnector.describe(e)));
      }
    } catch (RuntimeException e) {
      if (!stopping) { // a bug or a broken crypto provider: fail now, not at the next timeout
        LOG.error("Reader of rank {} from {} failed", rank, peerName, e);
        owner.fail(Failure.error(rank, List.of(), "reading from " + peerName + " failed: "
            + RingConnector.describe(e)));
      }
    }
  }

  /** Reads, opens and handles one frame; false when nothing more is to be read. */
  private boolean readFrame() throws IOException {
    inBuffer.clear().limit(Wire.HEADER_BYTES);
    readFully(inBuffer);
    inBuffer.order(ByteOrder.BIG_ENDIAN);
    int length = inBuffer.getInt(Wire.HEADER_BYTES - Integer.BYTES);
    if (length < 0 || length > Wire.MAX_PAYLOAD_BYTES) {
      owner.fail(receiveSeal.tagBytes() > 0
          ? Failure.integrity(rank, peer, peerAddress, "a frame length of " + length + " bytes")
          : Failure.error(rank, List.of(peer), "out of sync with " + peerName + ": a frame of " + length + " bytes"));
      return false;
    }
    inBuffer.limit(Wire.HEADER_BYTES + length + receiveSeal.tagBytes());
    readFully(inBuffer);
    if (!receiveSeal.open(inBuffer, 0, Wire.HEADER_BYTES + length)) {
      owner.fail(Failure.integrity(rank, peer, peerAddress, null));
      return false;
    }
    byte op = inBuffer.get(0);
    if (op == Wire.ABORT) {
      Wire.checkAbortLength(length);
      byte[] payload = new byte[length];
      inBuffer.get(Wire.HEADER_BYTES, payload);
      peerStopped(Wire.parseAbort(payload));
      return false;
    }
    if (op != Wire.PIPE_DATA || length % Float.BYTES != 0) {
      owner.fail(Failure.error(rank, List.of(peer), "out of sync with " + peerName + ": received "
          + Wire.opName(op) + " of " + length + " bytes (expected pipeline data)"));
      return false;
    }
    int message = inBuffer.getInt(1); // the header, big-endian: op, seq, count, aux, length
    int count = inBuffer.getInt(5);
    int tag = inBuffer.getInt(9);
    float[] floats = new float[length / Float.BYTES];
    inBuffer.limit(Wire.HEADER_BYTES + length).position(Wire.HEADER_BYTES);
    inBuffer.order(Wire.FLOAT_ORDER).asFloatBuffer().get(floats);
    return enqueue(new Chunk(message, count, tag, floats));
  }

  /**
   * An orderly close ends this link once its data is taken; any other failure of the peer (reported by it, or
   * passed on from further along) is the links' failure at once.
   */
  private void peerStopped(Failure f) {
    if (f.kind() == Failure.Kind.CLOSED) {
      end(Failure.error(rank, List.of(peer), peerName + " closed its pipeline links"));
    } else {
      owner.fail(f);
    }
  }

  /** Queues a chunk, waiting while the queue is full (TCP then holds the sender back); false if the links stop. */
  private boolean enqueue(Chunk chunk) {
    long bytes = (long) chunk.floats.length * Float.BYTES;
    queueLock.lock();
    try {
      while (!queue.isEmpty() && queuedBytes + bytes > maxQueuedBytes && !stopping) {
        changed.awaitUninterruptibly();
      }
      if (stopping) {
        return false;
      }
      queue.add(chunk);
      queuedBytes += bytes;
      changed.signalAll();
      return true;
    } finally {
      queueLock.unlock();
    }
  }

  private void end(Failure why) {
    queueLock.lock();
    try {
      if (ended == null) {
        ended = why;
        LOG.debug("Rank {}: {}", rank, why.reason());
      }
      changed.signalAll();
    } finally {
      queueLock.unlock();
    }
  }

  /** Fills {@code buffer} to its limit from the connection; waits as long as the connection lives. */
  private void readFully(ByteBuffer buffer) throws IOException {
    while (buffer.hasRemaining()) {
      int n = channel.read(buffer);
      if (n < 0) {
        throw new EOFException();
      }
      if (n == 0) {
        readable.select();
        readable.selectedKeys().clear();
      }
    }
  }

  // ---- stopping ------------------------------------------------------------------------------------------------

  /**
   * Closes the connection (after the data written so far, which the kernel still delivers) and wakes every thread
   * waiting on this link; idempotent.
   */
  void shutDown() {
    stopping = true;
    queueLock.lock();
    try {
      changed.signalAll();
    } finally {
      queueLock.unlock();
    }
    try {
      channel.close();
    } catch (IOException e) {
      LOG.debug("Cannot close the connection of rank {} with {}: {}", rank, peerName, RingConnector.describe(e));
    }
    for (Selector selector : List.of(readable, writable)) {
      try {
        selector.close(); // wakes a thread selecting on it; the channel's socket is released with its keys
      } catch (IOException e) {
        LOG.debug("Cannot close a selector of rank {}: {}", rank, RingConnector.describe(e));
      }
    }
  }

  /** Waits up to {@code millis} for the reader thread to end; false if it is still running. */
  boolean awaitReader(long millis) {
    join(reader, millis);
    return !reader.isAlive();
  }

  private static void join(Thread thread, long millis) {
    if (thread == Thread.currentThread()) {
      return;
    }
    try {
      thread.join(Math.max(1, millis));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
