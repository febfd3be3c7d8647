package dev.stagecraft.training.collective;

import static java.util.Objects.requireNonNull;

import java.io.EOFException;
import java.io.IOException;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.CancelledKeyException;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The ring implementation of {@link Communicator}. Each connection carries data in one direction only: the op thread
 * (the caller's) writes frames to the next rank and reads frames from the previous rank. The reverse direction of
 * each connection carries only abort notices (written by whoever fails, read by a watcher thread).
 *
 * <p>The op thread alternates "send a chunk, receive a chunk". A rank is then never more than a chunk ahead of the
 * rank it reads from, so at most two chunks of a connection are in flight, well within its socket buffers: a write
 * waits only when the next rank stops reading, and then at most the operation timeout.
 *
 * <p>Data moves through direct buffers on non-blocking NIO channels, waited on in a selector (which gives reads and
 * writes their timeout and lets an interrupt end the operation). Each float is copied once on each side outside the
 * kernel: encoded into a direct buffer that the kernel reads, and on arrival added (or copied) from the direct buffer
 * the kernel filled straight into the caller's array. (Socket streams over heap arrays cost two more copies per
 * side: the JDK stages every heap array through a temporary direct buffer.) One thread per rank does both: on two
 * cores a separate sender thread per rank cost a quarter more time than the hand-offs saved.
 *
 * <p>Frames are sealed per direction ({@link FrameSeal}, as the group's {@link FrameIntegrity} says): a sealed frame
 * is read whole and opened before anything in it is looked at, so a frame altered or forged on the way fails the
 * operation, naming the rank it claims to come from, and its data is never used. Encrypted frames are sealed in the
 * outgoing buffer and opened in the receive buffer, in place; the caller's arrays never hold ciphertext.
 */
final class RingCommunicator implements Communicator {
  private static final Logger LOG = LoggerFactory.getLogger(RingCommunicator.class);

  private static final int RECEIVE_BUFFER_BYTES = 1 << 20;
  /** Longest the op thread sleeps in the selector before it checks for a failure recorded by another thread. */
  private static final long POLL_MILLIS = 100;
  /** How long a failing rank waits for its abort notice to go out before it closes the sockets. */
  private static final long ABORT_GRACE_MILLIS = 200;
  private static final long MAX_CLOSE_DRAIN_MILLIS = 5_000;

  @FunctionalInterface
  private interface Body<T> {
    T run(int seq) throws IOException;
  }

  /** Unwinds the op thread with a failure; no stack trace, it is turned into a CollectiveException. */
  private static final class FailureSignal extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final transient Failure failure;

    FailureSignal(Failure failure) {
      super(failure.reason(), null, false, false);
      this.failure = failure;
    }
  }

  private final int rank;
  private final int worldSize;
  private final int previous;
  private final int next;
  private final String self;
  private final String timeoutText;
  private final long timeoutNanos;

  /**
   * From the previous rank, non-blocking: frames are read by the op thread (through {@link #inBuffer}); abort
   * notices to the previous rank are written on its reverse direction by any thread, under {@link #backLock}.
   */
  private final SocketChannel in;
  /** The op thread's: {@link #in} for reading, {@link #out} for writing (interest set while it waits). */
  private final Selector ready;
  private final SelectionKey outKey;
  /** Received bytes not yet consumed, between position and limit; little-endian except while a header is read. */
  private final ByteBuffer inBuffer;
  private final Object backLock = new Object();
  /**
   * To the next rank, non-blocking: whole frames written under {@link #outLock} — by the op thread, or an abort notice
   * by whoever fails; abort notices from the next rank are read on its reverse direction by the watcher.
   */
  private final SocketChannel out;
  private final ReentrantLock outLock = new ReentrantLock();
  /** A frame to the next rank was abandoned half-written: nothing more may follow it, not even an abort notice. */
  private volatile boolean outTorn;
  /** The outgoing chunk: header and floats. */
  private final ByteBuffer outBuffer;
  /** The watcher's: {@link #out} for reading. */
  private final Selector watched;
  private final float[] scratch;
  private final Thread watcher;
  /** Seal of the frames to the next rank (under {@link #outLock}), of those from the previous rank (op thread), of
   * abort notices to the previous rank (under {@link #backLock}) and of those from the next rank (watcher). */
  private final FrameSeal outSeal;
  private final FrameSeal inSeal;
  private final FrameSeal backSeal;
  private final FrameSeal watchSeal;
  private final String previousAddress;
  private final String nextAddress;

  private final AtomicReference<Failure> failure = new AtomicReference<>();
  /**
   * The next rank closed or dropped its connection. Not a failure by itself: a neighbour that finished the last
   * operation may close while this rank still receives the end of it. It fails the next send, or the next operation.
   */
  private volatile Failure nextGone;
  private final AtomicBoolean closed = new AtomicBoolean();
  /** Sequence number of the current or last operation; written by the op thread only. */
  private volatile int seq;

  private final String previousName;
  private final String nextName;
  // Where the op thread waited (WaitTimes): before a frame from the previous rank began, inside one, or to send.
  private long waitBeforeFrameNanos;
  private long waitInFrameNanos;
  private long waitSendingNanos;
  private boolean inFrame;

  /**
   * {@code in} and {@code out} are authenticated connections from the previous and to the next rank, with the keys
   * their handshakes agreed, or all null for a group of one.
   */
  RingCommunicator(GroupSpec spec, Socket in, Handshake.Session fromPrevious, Socket out, Handshake.Session toNext)
      throws IOException {
    this.rank = spec.rank();
    this.worldSize = spec.worldSize();
    this.previous = spec.previous();
    this.next = spec.next();
    this.self = "rank " + rank + " of " + worldSize + " in group '" + spec.groupId() + "'";
    // With its address: on a cluster, which host went silent is what the operator needs first.
    this.previousName = "rank " + previous + " (" + spec.peers().get(previous) + ")";
    this.nextName = "rank " + next + " (" + spec.peers().get(next) + ")";
    this.timeoutText = Durations.format(spec.operationTimeout());
    this.timeoutNanos = spec.operationTimeout().toNanos();
    this.previousAddress = spec.peers().get(previous).toString();
    this.nextAddress = spec.peers().get(next).toString();
    if (in == null || out == null) {
      if (worldSize != 1) {
        throw new IllegalArgumentException("Cannot create " + self + " without connections");
      }
      this.in = null;
      this.ready = null;
      this.outKey = null;
      this.inBuffer = null;
      this.out = null;
      this.outBuffer = null;
      this.watched = null;
      this.scratch = null;
      this.watcher = null;
      this.outSeal = this.inSeal = this.backSeal = this.watchSeal = FrameSeal.NONE;
      return;
    }
    // This rank is the client of the connection to the next rank and the server of the one from the previous rank.
    this.outSeal = FrameSeal.of(toNext.integrity(), toNext.clientToServer());
    this.watchSeal = FrameSeal.of(toNext.integrity(), toNext.serverToClient());
    this.inSeal = FrameSeal.of(fromPrevious.integrity(), fromPrevious.clientToServer());
    this.backSeal = FrameSeal.of(fromPrevious.integrity(), fromPrevious.serverToClient());
    if (in.getChannel() == null || out.getChannel() == null) {
      throw new IllegalArgumentException("Cannot create " + self
          + " on sockets without channels (expected connections made by Communicator.connect)");
    }
    this.in = in.getChannel();
    this.out = out.getChannel();
    this.in.configureBlocking(false);
    this.out.configureBlocking(false);
    this.ready = Selector.open();
    this.in.register(ready, SelectionKey.OP_READ);
    this.outKey = this.out.register(ready, 0);
    this.watched = Selector.open();
    this.out.register(watched, SelectionKey.OP_READ);
    // A sealed frame is read whole before it is opened: the receive buffer holds the largest.
    int sealedFrame = Wire.HEADER_BYTES + Wire.MAX_PAYLOAD_BYTES + inSeal.tagBytes();
    this.inBuffer = ByteBuffer.allocateDirect(Math.max(RECEIVE_BUFFER_BYTES, inSeal.tagBytes() > 0 ? sealedFrame : 0))
        .order(Wire.FLOAT_ORDER).limit(0);
    this.outBuffer = ByteBuffer.allocateDirect(Wire.HEADER_BYTES + Wire.MAX_PAYLOAD_BYTES + outSeal.tagBytes());
    this.scratch = new float[Wire.CHUNK_FLOATS];
    this.watcher = new Thread(this::watchLoop, "stagecraft-collective-" + spec.groupId() + "-r" + rank + "-watch");
    watcher.setDaemon(true);
    watcher.start();
  }

  /** A group of one: every operation is a no-op (after the usual argument and state checks). */
  static RingCommunicator alone(GroupSpec spec) {
    try {
      return new RingCommunicator(spec, null, null, null, null);
    } catch (IOException e) {
      throw new IllegalStateException("Cannot happen without sockets", e);
    }
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
  public void allReduceSum(float[] data) {
    requireNonNull(data, "data is null");
    run(Wire.ALL_REDUCE_SUM, s -> {
      ringAllReduce(Wire.ALL_REDUCE_SUM, s, data);
      return null;
    });
  }

  @Override
  public void allReduceMean(float[] data) {
    requireNonNull(data, "data is null");
    run(Wire.ALL_REDUCE_MEAN, s -> {
      ringAllReduce(Wire.ALL_REDUCE_MEAN, s, data);
      float n = worldSize;
      for (int i = 0; i < data.length; i++) {
        data[i] /= n;
      }
      return null;
    });
  }

  @Override
  public void broadcast(float[] data, int root) {
    requireNonNull(data, "data is null");
    if (root < 0 || root >= worldSize) {
      throw new IllegalArgumentException(
          "Invalid broadcast root: " + root + " (expected 0.." + (worldSize - 1) + ")");
    }
    run(Wire.BROADCAST, s -> {
      ringBroadcast(s, data, root);
      return null;
    });
  }

  @Override
  public void barrier() {
    run(Wire.BARRIER, s -> {
      // n-1 rounds of "pass a token on": the token a rank receives in round t left rank - 1 - t after it had
      // arrived, so after n-1 rounds every other rank has arrived.
      for (int t = 0; t < worldSize - 1; t++) {
        sendFrame(Wire.BARRIER, s, 0, 0, new byte[0]);
        receiveBytes(Wire.BARRIER, s, 0, 0, 0);
      }
      return null;
    });
  }

  @Override
  public List<byte[]> allGather(byte[] data) {
    requireNonNull(data, "data is null");
    if (data.length > MAX_ALL_GATHER_BYTES) {
      throw new IllegalArgumentException("Invalid allGather payload: " + data.length + " bytes (expected at most "
          + MAX_ALL_GATHER_BYTES + ")");
    }
    return run(Wire.ALL_GATHER, s -> {
      byte[][] items = new byte[worldSize][];
      items[rank] = data.clone();
      for (int t = 0; t < worldSize - 1; t++) {
        sendFrame(Wire.ALL_GATHER, s, 0, 0, items[Math.floorMod(rank - t, worldSize)]);
        items[Math.floorMod(rank - t - 1, worldSize)] =
            receiveBytes(Wire.ALL_GATHER, s, 0, 0, MAX_ALL_GATHER_BYTES);
      }
      return List.of(items);
    });
  }

  // ---- algorithms --------------------------------------------------------------------------------------------

  /**
   * Reduce-scatter: in step s rank r sends segment r-s and adds segment r-s-1 from r-1 into its own; after n-1 steps
   * it holds the full sum of segment r+1. All-gather: in step t it sends segment r+1-t and copies in segment r-t.
   * Segments split into chunks; each chunk is sent before the matching one is received, so the next rank reads and
   * reduces this chunk while this rank reads and reduces the previous rank's.
   */
  private void ringAllReduce(byte op, int s, float[] data) throws IOException {
    if (worldSize == 1) {
      return;
    }
    for (int step = 0; step < worldSize - 1; step++) {
      exchange(op, s, data, rank - step, rank - step - 1, true);
    }
    for (int step = 0; step < worldSize - 1; step++) {
      exchange(op, s, data, rank + 1 - step, rank - step, false);
    }
  }

  private void exchange(byte op, int s, float[] data, int sendSegment, int receiveSegment, boolean add)
      throws IOException {
    int length = data.length;
    int sendStart = segmentStart(length, Math.floorMod(sendSegment, worldSize));
    int sendLength = segmentLength(length, Math.floorMod(sendSegment, worldSize));
    int receiveStart = segmentStart(length, Math.floorMod(receiveSegment, worldSize));
    int receiveLength = segmentLength(length, Math.floorMod(receiveSegment, worldSize));
    int sendChunks = chunks(sendLength);
    int receiveChunks = chunks(receiveLength);
    for (int c = 0; c < Math.max(sendChunks, receiveChunks); c++) {
      int offset = c * Wire.CHUNK_FLOATS;
      if (c < sendChunks) {
        sendFloats(op, s, length, 0, data, sendStart + offset, Math.min(Wire.CHUNK_FLOATS, sendLength - offset));
      }
      if (c < receiveChunks) {
        receiveFloats(op, s, length, 0, data, receiveStart + offset,
            Math.min(Wire.CHUNK_FLOATS, receiveLength - offset), add);
      }
    }
  }

  /** Chunks flow root → root+1 → … → root-1, which then tells the root it is done. */
  private void ringBroadcast(int s, float[] data, int root) throws IOException {
    if (worldSize == 1) {
      return;
    }
    int length = data.length;
    int chunks = chunks(length);
    if (rank == root) {
      for (int c = 0; c < chunks; c++) {
        int offset = c * Wire.CHUNK_FLOATS;
        sendFloats(Wire.BROADCAST, s, length, root, data, offset, Math.min(Wire.CHUNK_FLOATS, length - offset));
      }
      receiveBytes(Wire.BROADCAST, s, length, root, 0);
      return;
    }
    boolean last = next == root;
    for (int c = 0; c < chunks; c++) {
      int offset = c * Wire.CHUNK_FLOATS;
      int n = Math.min(Wire.CHUNK_FLOATS, length - offset);
      receiveFloats(Wire.BROADCAST, s, length, root, data, offset, n, false);
      if (!last) {
        sendFloats(Wire.BROADCAST, s, length, root, data, offset, n);
      }
    }
    if (last) {
      sendFrame(Wire.BROADCAST, s, length, root, new byte[0]);
    }
  }

  /** Segment i of n: the first length % n segments have one element more. */
  static int segmentStart(int length, int i, int n) {
    return i * (length / n) + Math.min(i, length % n);
  }

  static int segmentLength(int length, int i, int n) {
    return length / n + (i < length % n ? 1 : 0);
  }

  private int segmentStart(int length, int i) {
    return segmentStart(length, i, worldSize);
  }

  private int segmentLength(int length, int i) {
    return segmentLength(length, i, worldSize);
  }

  /** At least one chunk, also for an empty segment, so that every step exchanges a frame and stays checked. */
  static int chunks(int floats) {
    return Math.max(1, (int) (((long) floats + Wire.CHUNK_FLOATS - 1) / Wire.CHUNK_FLOATS)); // no int overflow
  }

  // ---- framing -------------------------------------------------------------------------------------------------

  private void sendFloats(byte op, int s, int count, int aux, float[] data, int offset, int n) {
    checkCanSend();
    ByteBuffer frame = outBuffer;
    frame.clear();
    Wire.putHeader(frame, op, s, count, aux, n * Float.BYTES);
    Wire.encodeFloats(data, offset, n, frame);
    frame.flip();
    write(frame);
  }

  private void sendFrame(byte op, int s, int count, int aux, byte[] payload) {
    checkCanSend();
    ByteBuffer frame = outBuffer;
    frame.clear();
    Wire.putHeader(frame, op, s, count, aux, payload.length);
    frame.put(payload).flip();
    write(frame);
  }

  /**
   * Seals a whole frame (position to limit; the buffer has room for the tag) and writes it to the next rank, waiting
   * at most the operation timeout for it to take the data.
   */
  private void write(ByteBuffer frame) {
    outLock.lock();
    try {
      outSeal.seal(frame);
      long deadline = System.nanoTime() + timeoutNanos;
      while (frame.hasRemaining()) {
        if (out.write(frame) == 0) {
          awaitWritable(deadline);
        }
      }
    } catch (IOException e) {
      Failure f = failure.get();
      if (f == null) {
        f = nextGone;
      }
      throw new FailureSignal(f != null ? f : Failure.error(rank, List.of(next),
          "cannot send to " + nextName + ": " + RingConnector.describe(e)));
    } finally {
      if (frame.hasRemaining() && frame.position() > 0) {
        outTorn = true;
      } else if (frame.hasRemaining()) {
        outSeal.withdraw(); // nothing of it went out: an abort notice takes its sequence number
      }
      outLock.unlock();
    }
  }

  private void awaitWritable(long deadline) throws IOException {
    long left = deadline - System.nanoTime();
    if (left <= 0) {
      throw new FailureSignal(Failure.timeout(rank, List.of(next),
          nextName + " did not take data within " + timeoutText));
    }
    checkStillRunning("sending to rank " + next);
    long t0 = System.nanoTime();
    try {
      outKey.interestOps(SelectionKey.OP_WRITE);
      select(left);
      outKey.interestOps(0);
      waitSendingNanos += System.nanoTime() - t0;
    } catch (CancelledKeyException e) {
      throw closedByAnotherThread();
    }
  }

  private void checkCanSend() {
    Failure f = failure.get();
    if (f == null) {
      f = nextGone;
    }
    if (f != null) {
      throw new FailureSignal(f);
    }
  }

  private void receiveFloats(byte op, int s, int count, int aux, float[] data, int offset, int n, boolean add)
      throws IOException {
    int length = readHeader(op, s, count, aux);
    if (length != n * Float.BYTES) {
      throw outOfSync("received a chunk of " + length + " bytes, expected " + n * Float.BYTES);
    }
    // Consume the floats as they arrive, straight from the buffer the kernel filled.
    for (int done = 0; done < n; ) {
      fill(Float.BYTES);
      int k = Math.min(n - done, inBuffer.remaining() / Float.BYTES);
      if (add) {
        inBuffer.asFloatBuffer().get(scratch, 0, k);
        int base = offset + done;
        for (int i = 0; i < k; i++) {
          data[base + i] += scratch[i];
        }
      } else {
        inBuffer.asFloatBuffer().get(data, offset + done, k);
      }
      inBuffer.position(inBuffer.position() + k * Float.BYTES);
      done += k;
    }
    endFrame();
  }

  private byte[] receiveBytes(byte op, int s, int count, int aux, int maxLength) throws IOException {
    int length = readHeader(op, s, count, aux);
    if (length < 0 || length > maxLength) {
      throw outOfSync("received a frame of " + length + " bytes, expected at most " + maxLength);
    }
    return readPayload(length);
  }

  private byte[] readPayload(int length) throws IOException {
    byte[] payload = new byte[length];
    for (int done = 0; done < length; ) {
      fill(1);
      int k = Math.min(length - done, inBuffer.remaining());
      inBuffer.get(payload, done, k);
      done += k;
    }
    endFrame();
    return payload;
  }

  /** Steps over the tag of the frame whose payload was just consumed (it was checked when the frame was opened). */
  private void endFrame() {
    inBuffer.position(inBuffer.position() + inSeal.tagBytes());
  }

  /**
   * Under a seal: reads the whole frame that starts here into {@link #inBuffer} and opens it, or fails naming the
   * previous rank. Only the length is read before, and only to know how much to read.
   */
  private void openFrame() throws IOException {
    fill(Wire.HEADER_BYTES);
    int start = inBuffer.position();
    int length = Integer.reverseBytes(inBuffer.getInt(start + Wire.HEADER_BYTES - Integer.BYTES)); // big-endian
    if (length < 0 || length > Wire.MAX_PAYLOAD_BYTES) {
      throw integrityFailure(previous, previousAddress, "a frame length of " + length + " bytes");
    }
    fill(Wire.HEADER_BYTES + length + inSeal.tagBytes());
    if (!inSeal.open(inBuffer, inBuffer.position(), Wire.HEADER_BYTES + length)) {
      throw integrityFailure(previous, previousAddress, null);
    }
  }

  private FailureSignal integrityFailure(int from, String address, String what) {
    return new FailureSignal(integrityError(from, address, what));
  }

  private Failure integrityError(int from, String address, String what) {
    return Failure.integrity(rank, from, address, what);
  }

  /** Reads the next header from the previous rank, checks it is the expected frame and returns its length. */
  private int readHeader(byte op, int s, int count, int aux) throws IOException {
    // Until the header's first byte is in, waiting means the previous rank has not sent yet; after it, the frame is
    // on its way and waiting means the link is slow (awaitReadable also looks at the bytes fill() holds).
    inFrame = false;
    if (inSeal.tagBytes() > 0) {
      openFrame();
    }
    fill(Wire.HEADER_BYTES);
    inFrame = true;
    inBuffer.order(ByteOrder.BIG_ENDIAN);
    byte gotOp = inBuffer.get();
    int gotSeq = inBuffer.getInt();
    int gotCount = inBuffer.getInt();
    int gotAux = inBuffer.getInt();
    int length = inBuffer.getInt();
    inBuffer.order(Wire.FLOAT_ORDER);
    if (gotOp == Wire.ABORT) {
      Wire.checkAbortLength(length);
      throw new FailureSignal(Wire.parseAbort(readPayload(length)));
    }
    if (gotOp != op || gotSeq != s) {
      throw outOfSync("received " + Wire.opName(gotOp) + " #" + gotSeq + " while this rank runs "
          + Wire.opName(op) + " #" + s);
    }
    if (gotCount != count) {
      throw outOfSync("rank " + previous + " called " + Wire.opName(op) + " #" + s + " with " + gotCount
          + " floats, this rank with " + count);
    }
    if (gotAux != aux) {
      throw outOfSync("rank " + previous + " called " + Wire.opName(op) + " #" + s + " with root " + gotAux
          + ", this rank with root " + aux);
    }
    return length;
  }

  /**
   * Makes at least {@code bytes} (at most the buffer's capacity) readable in {@link #inBuffer}, reading whatever the
   * previous rank has sent that fits. Waits at most the operation timeout for data to arrive; gives up early when
   * another thread recorded a failure or the op thread is interrupted.
   */
  private void fill(int bytes) throws IOException {
    if (inBuffer.remaining() >= bytes) {
      return;
    }
    inBuffer.compact();
    try {
      long deadline = System.nanoTime() + timeoutNanos;
      while (inBuffer.position() < bytes) {
        int n = in.read(inBuffer);
        if (n < 0) {
          throw new EOFException();
        }
        if (n == 0) {
          awaitReadable(deadline);
        }
      }
    } finally {
      inBuffer.flip();
    }
  }

  private void awaitReadable(long deadline) throws IOException {
    long left = deadline - System.nanoTime();
    if (left <= 0) {
      throw new SocketTimeoutException();
    }
    checkStillRunning("receiving from rank " + previous);
    long t0 = System.nanoTime();
    select(left);
    if (inFrame || inBuffer.position() > 0) { // fill() has compacted: position = bytes of the frame already in
      waitInFrameNanos += System.nanoTime() - t0;
    } else {
      waitBeforeFrameNanos += System.nanoTime() - t0;
    }
  }

  @Override
  public WaitTimes waits() {
    return new WaitTimes(previous, next, waitBeforeFrameNanos / 1e9, waitInFrameNanos / 1e9, waitSendingNanos / 1e9);
  }

  /** Fails the operation if another thread recorded a failure or the op thread was interrupted. */
  private void checkStillRunning(String doing) {
    Failure f = failure.get();
    if (f != null) {
      throw new FailureSignal(f);
    }
    if (Thread.currentThread().isInterrupted()) {
      throw new FailureSignal(Failure.error(rank, List.of(), "interrupted while " + doing));
    }
  }

  private void select(long leftNanos) throws IOException {
    try {
      ready.select(Math.max(1, Math.min(TimeUnit.NANOSECONDS.toMillis(leftNanos), POLL_MILLIS)));
      ready.selectedKeys().clear();
    } catch (ClosedSelectorException e) {
      throw closedByAnotherThread();
    }
  }

  /** Another thread closed the connections or the selector under the op thread; it recorded why first. */
  private FailureSignal closedByAnotherThread() {
    Failure closed = failure.get();
    return new FailureSignal(closed != null ? closed : Failure.closed(rank));
  }

  private FailureSignal outOfSync(String what) {
    return new FailureSignal(Failure.error(rank, List.of(previous), "out of sync with rank " + previous + ": " + what));
  }

  // ---- operation lifecycle and failures ------------------------------------------------------------------------

  private <T> T run(byte op, Body<T> body) {
    String name = Wire.opName(op);
    if (closed.get()) {
      throw new IllegalStateException("Cannot run " + name + ": the communicator of " + self + " is closed");
    }
    Failure earlier = failure.get();
    if (earlier != null) {
      throw earlier.toException("Cannot run " + name + ": the communicator of " + self + " failed earlier", rank, null);
    }
    int s = seq + 1;
    seq = s;
    String prefix = "Cannot complete " + name + " #" + s;
    try {
      if (worldSize > 1 && nextGone != null) {
        throw new FailureSignal(nextGone);
      }
      return body.run(s);
    } catch (FailureSignal e) {
      throw failed(prefix, e.failure, null);
    } catch (SocketTimeoutException e) {
      throw failed(prefix,
          Failure.timeout(rank, List.of(previous), "no data from " + previousName + " within " + timeoutText), e);
    } catch (EOFException e) {
      throw failed(prefix, Failure.error(rank, List.of(previous), previousName + " closed its connection"), e);
    } catch (IOException e) {
      throw failed(prefix, Failure.error(rank, List.of(previous),
          "connection from " + previousName + " failed: " + RingConnector.describe(e)), e);
    }
  }

  /** Records {@code local} unless another failure came first (then that one, the cause, is reported). */
  private CollectiveException failed(String prefix, Failure local, Throwable cause) {
    Failure first = recordFailure(local);
    return first.toException(prefix, rank, first == local ? cause : null);
  }

  /**
   * Makes {@code f} this communicator's failure if it is the first: tells both neighbours (best effort) and closes
   * the connections, which also unblocks the op thread. Returns the failure that was recorded first.
   */
  private Failure recordFailure(Failure f) {
    if (!failure.compareAndSet(null, f)) {
      return failure.get();
    }
    if (f.kind() == Failure.Kind.CLOSED) {
      LOG.info("Stopping {}: {}", self, f.describeAt(rank));
    } else {
      LOG.warn("Collective failure on {}: {}", self, f.describeAt(rank));
    }
    // Forward once the frame being written, if any, is out; backward at once. Each is sealed as it is sent.
    byte[] notice = Wire.abortFrame(f, seq);
    sendForward(notice, ABORT_GRACE_MILLIS);
    sendBackward(notice);
    closeConnections(false);
    return f;
  }

  /**
   * Best effort: the notice goes out after the frame the op thread is writing, if it finishes within {@code millis}
   * (it sees the failure and stops at the next wait); never after a frame it abandoned half-written.
   */
  private void sendForward(byte[] notice, long millis) {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
    try {
      if (!outLock.tryLock(millis, TimeUnit.MILLISECONDS)) {
        LOG.debug("Cannot tell rank {} that {} stopped: a frame to it is still being written", next, self);
        return;
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return;
    }
    try {
      if (outTorn) {
        LOG.debug("Cannot tell rank {} that {} stopped: the last frame to it was cut off", next, self);
        return;
      }
      writeBriefly(out, outSeal.sealedCopy(notice), deadline, next);
    } finally {
      outLock.unlock();
    }
  }

  /** Writes a small notice on a non-blocking channel until it is out or {@code deadline} passes. */
  private void writeBriefly(SocketChannel channel, byte[] notice, long deadline, int to) {
    try {
      if (!Wire.writeBefore(channel, notice, deadline)) {
        LOG.debug("Cannot tell rank {} that {} stopped: it takes no data", to, self);
      }
    } catch (IOException e) {
      LOG.debug("Cannot tell rank {} that {} stopped: {}", to, self, RingConnector.describe(e));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Best effort, and brief: the reverse direction carries nothing else, so the notice normally fits at once. */
  private void sendBackward(byte[] notice) {
    synchronized (backLock) {
      writeBriefly(in, backSeal.sealedCopy(notice),
          System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ABORT_GRACE_MILLIS), previous);
    }
  }

  /** Waits for an abort notice from the next rank, or for its connection to end. */
  private void watchLoop() {
    try {
      ByteBuffer header = ByteBuffer.allocate(Wire.HEADER_BYTES);
      watchRead(header);
      header.flip();
      byte op = header.get();
      header.getInt(); // seq
      header.getInt(); // count
      header.getInt(); // aux
      int length = header.getInt();
      byte[] opened = null; // under a seal: the whole frame, read and opened before anything in it is believed
      if (watchSeal.tagBytes() > 0) {
        if (length < 0 || length > Wire.MAX_ABORT_BYTES) {
          recordFailure(integrityError(next, nextAddress, "a frame length of " + length + " bytes"));
          return;
        }
        ByteBuffer frame = ByteBuffer.allocate(Wire.HEADER_BYTES + length + watchSeal.tagBytes());
        frame.put(header.array());
        watchRead(frame);
        if (!watchSeal.open(frame, 0, Wire.HEADER_BYTES + length)) {
          recordFailure(integrityError(next, nextAddress, null));
          return;
        }
        opened = frame.array();
      }
      if (op != Wire.ABORT) {
        recordFailure(Failure.error(rank, List.of(next),
            "out of sync with rank " + next + ": received " + Wire.opName(op) + " on the reverse connection"));
        return;
      }
      Wire.checkAbortLength(length);
      ByteBuffer payload = ByteBuffer.allocate(length);
      if (opened != null) {
        payload.put(0, opened, Wire.HEADER_BYTES, length);
      } else {
        watchRead(payload);
      }
      Failure f = Wire.parseAbort(payload.array());
      if (f.kind() == Failure.Kind.CLOSED) {
        nextGone = f;
      } else {
        recordFailure(f);
      }
    } catch (ClosedSelectorException e) {
      // closed: nothing more to watch
    } catch (IOException e) {
      if (failure.get() == null && nextGone == null) {
        nextGone = e instanceof EOFException
            ? Failure.error(rank, List.of(next), nextName + " closed its connection")
            : Failure.error(rank, List.of(next),
                "connection to " + nextName + " failed: " + RingConnector.describe(e));
        LOG.debug("{}: {}", self, nextGone.describeAt(rank));
      }
    }
  }

  /** Reads until {@code buffer} is full from the reverse direction of {@link #out}; waits as long as it lives. */
  private void watchRead(ByteBuffer buffer) throws IOException {
    while (buffer.hasRemaining()) {
      int n = out.read(buffer);
      if (n < 0) {
        throw new EOFException();
      }
      if (n == 0) {
        watched.select();
        watched.selectedKeys().clear();
      }
    }
  }

  @Override
  public void close() {
    if (!closed.compareAndSet(false, true) || worldSize == 1) {
      return;
    }
    Failure mine = Failure.closed(rank);
    if (failure.compareAndSet(null, mine)) {
      // Orderly: every frame of the last operation is written (the kernel delivers what it holds); then the notice,
      // once the op thread (if another thread closes it mid-operation) has let go of the connection.
      byte[] notice = Wire.abortFrame(mine, seq);
      long drainMillis = Math.min(TimeUnit.NANOSECONDS.toMillis(timeoutNanos), MAX_CLOSE_DRAIN_MILLIS);
      sendForward(notice, drainMillis);
      sendBackward(notice);
    }
    closeConnections(true);
    for (Selector selector : List.of(ready, watched)) {
      try {
        selector.close();
      } catch (IOException e) {
        LOG.debug("Cannot close a selector of {}: {}", self, RingConnector.describe(e));
      }
    }
    join(watcher, 1_000);
    if (watcher.isAlive()) {
      LOG.warn("Closing {}: its watcher thread did not stop within 1 s", self);
    }
  }

  private void closeConnections(boolean logFailures) {
    for (SocketChannel channel : List.of(in, out)) {
      try {
        channel.close();
      } catch (IOException e) {
        if (logFailures) {
          LOG.warn("Cannot close a connection of {}: {}", self, RingConnector.describe(e));
        } else {
          LOG.debug("Cannot close a connection of {}: {}", self, RingConnector.describe(e));
        }
      }
    }
    ready.wakeup(); // an op thread waiting sees the failure now
    watched.wakeup();
  }

  private static void join(Thread thread, long millis) {
    try {
      thread.join(Math.max(1, millis));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public String toString() {
    return "RingCommunicator[" + self + "]";
  }
}
