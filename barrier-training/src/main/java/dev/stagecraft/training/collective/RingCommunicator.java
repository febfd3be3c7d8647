package dev.stagecraft.training.collective;

import static java.util.Objects.requireNonNull;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The ring implementation of {@link Communicator}. Each connection carries data in one direction only: the op thread
 * reads frames from the previous rank, and a sender thread writes frames to the next rank, so that a rank never
 * waits for its own writes to drain before reading and neighbours cannot deadlock on full socket buffers. The
 * reverse direction of each connection carries only abort notices (written by whoever fails, read by a watcher).
 *
 * <p>The op thread encodes outgoing chunks into a small pool of buffers; the sender returns them to the pool once
 * written. The pool bounds memory and applies back-pressure; the op thread always alternates "send a chunk, receive
 * a chunk", which keeps the ring deadlock-free with two or more buffers even if sockets buffered nothing. The
 * caller's array is only ever touched by the op thread.
 *
 * <p>Data moves through direct buffers on NIO channels, so each float is copied once on each side outside the kernel:
 * encoded into a pooled direct buffer that the kernel reads, and on arrival added (or copied) from the direct buffer
 * the kernel filled straight into the caller's array. (Socket streams over heap arrays cost two more copies per side:
 * the JDK stages every heap array through a temporary direct buffer.) The incoming channel is non-blocking and read
 * through a selector, which gives reads their timeout; the outgoing one blocks in the sender thread.
 */
final class RingCommunicator implements Communicator {
  private static final Logger LOG = LoggerFactory.getLogger(RingCommunicator.class);

  static final int SEND_BUFFERS = 4;
  private static final int RECEIVE_BUFFER_BYTES = 1 << 20;
  private static final long POLL_MILLIS = 20;
  /** Longest a blocked read sleeps in the selector before it checks for a failure recorded by another thread. */
  private static final long READ_POLL_MILLIS = 100;
  /** How long a failing rank waits for its abort notice to go out before it closes the sockets. */
  private static final long ABORT_GRACE_MILLIS = 200;
  private static final long MAX_CLOSE_DRAIN_MILLIS = 5_000;
  private static final OutFrame STOP = new OutFrame(ByteBuffer.allocate(0), false);

  /** A frame ready to write (position to limit); pooled frames go back to the pool once written. */
  private record OutFrame(ByteBuffer buffer, boolean pooled) {}

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

  private final Socket inSocket;
  private final Socket outSocket;
  /**
   * From the previous rank, non-blocking: frames are read by the op thread (through {@link #inBuffer}); abort
   * notices to the previous rank are written on its reverse direction by any thread, under {@link #backLock}.
   */
  private final SocketChannel in;
  private final Selector readable;
  /** Received bytes not yet consumed, between position and limit; little-endian except while a header is read. */
  private final ByteBuffer inBuffer;
  private final Object backLock = new Object();
  /** To the next rank, blocking: frames are written by the sender thread only. */
  private final SocketChannel out;
  /** Abort notices from the next rank; watcher thread only. */
  private final DataInputStream watchIn;

  private final LinkedBlockingQueue<OutFrame> sendQueue = new LinkedBlockingQueue<>();
  private final ArrayBlockingQueue<ByteBuffer> freeBuffers = new ArrayBlockingQueue<>(SEND_BUFFERS);
  private final float[] scratch;
  private final Thread sender;
  private final Thread watcher;

  private final AtomicReference<Failure> failure = new AtomicReference<>();
  /**
   * The next rank closed or dropped its connection. Not a failure by itself: a neighbour that finished the last
   * operation may close while this rank still receives the end of it. It fails the next send, or the next operation.
   */
  private volatile Failure nextGone;
  private final AtomicBoolean closed = new AtomicBoolean();
  /** Sequence number of the current or last operation; written by the op thread only. */
  private volatile int seq;

  /** {@code in} and {@code out} are authenticated connections from the previous and to the next rank, or both null
   * for a group of one. */
  RingCommunicator(GroupSpec spec, Socket in, Socket out) throws IOException {
    this.rank = spec.rank();
    this.worldSize = spec.worldSize();
    this.previous = spec.previous();
    this.next = spec.next();
    this.self = "rank " + rank + " of " + worldSize + " in group '" + spec.groupId() + "'";
    this.timeoutText = Durations.format(spec.operationTimeout());
    this.timeoutNanos = spec.operationTimeout().toNanos();
    this.inSocket = in;
    this.outSocket = out;
    if (in == null || out == null) {
      if (worldSize != 1) {
        throw new IllegalArgumentException("Cannot create " + self + " without connections");
      }
      this.in = null;
      this.readable = null;
      this.inBuffer = null;
      this.out = null;
      this.watchIn = null;
      this.scratch = null;
      this.sender = null;
      this.watcher = null;
      return;
    }
    if (in.getChannel() == null || out.getChannel() == null) {
      throw new IllegalArgumentException("Cannot create " + self
          + " on sockets without channels (expected connections made by Communicator.connect)");
    }
    out.setSoTimeout(0); // the watcher waits as long as the connection lives
    this.in = in.getChannel();
    this.out = out.getChannel();
    this.in.configureBlocking(false);
    this.readable = Selector.open();
    this.in.register(readable, SelectionKey.OP_READ);
    this.inBuffer = ByteBuffer.allocateDirect(RECEIVE_BUFFER_BYTES).order(Wire.FLOAT_ORDER).limit(0);
    this.watchIn = new DataInputStream(out.getInputStream());
    for (int i = 0; i < SEND_BUFFERS; i++) {
      freeBuffers.add(ByteBuffer.allocateDirect(Wire.HEADER_BYTES + Wire.CHUNK_BYTES));
    }
    this.scratch = new float[Wire.CHUNK_FLOATS];
    String threadPrefix = "stagecraft-collective-" + spec.groupId() + "-r" + rank;
    this.sender = new Thread(this::sendLoop, threadPrefix + "-send");
    this.watcher = new Thread(this::watchLoop, threadPrefix + "-watch");
    sender.setDaemon(true);
    watcher.setDaemon(true);
    sender.start();
    watcher.start();
  }

  /** A group of one: every operation is a no-op (after the usual argument and state checks). */
  static RingCommunicator alone(GroupSpec spec) {
    try {
      return new RingCommunicator(spec, null, null);
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
   * Segments split into chunks; each chunk is sent before the matching one is received, so the sender thread
   * writes while the op thread reads and reduces.
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
    return Math.max(1, (floats + Wire.CHUNK_FLOATS - 1) / Wire.CHUNK_FLOATS);
  }

  // ---- framing -------------------------------------------------------------------------------------------------

  private void sendFloats(byte op, int s, int count, int aux, float[] data, int offset, int n) {
    ByteBuffer frame = acquireSendBuffer();
    frame.clear();
    Wire.putHeader(frame, op, s, count, aux, n * Float.BYTES);
    Wire.encodeFloats(data, offset, n, frame);
    frame.flip();
    enqueue(new OutFrame(frame, true));
  }

  private void sendFrame(byte op, int s, int count, int aux, byte[] payload) {
    byte[] frame = new byte[Wire.HEADER_BYTES + payload.length];
    Wire.putHeader(frame, op, s, count, aux, payload.length);
    System.arraycopy(payload, 0, frame, Wire.HEADER_BYTES, payload.length);
    enqueue(new OutFrame(ByteBuffer.wrap(frame), false));
  }

  private void enqueue(OutFrame frame) {
    checkCanSend();
    sendQueue.add(frame);
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

  /** Waits for a free send buffer: while none is free the next rank is not taking data. */
  private ByteBuffer acquireSendBuffer() {
    long deadline = System.nanoTime() + timeoutNanos;
    while (true) {
      checkCanSend();
      ByteBuffer buffer;
      try {
        buffer = freeBuffers.poll(POLL_MILLIS, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new FailureSignal(Failure.error(rank, List.of(), "interrupted while sending to rank " + next));
      }
      if (buffer != null) {
        return buffer;
      }
      if (System.nanoTime() - deadline > 0) {
        throw new FailureSignal(Failure.timeout(rank, List.of(next),
            "rank " + next + " did not take data within " + timeoutText));
      }
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
    return payload;
  }

  /** Reads the next header from the previous rank, checks it is the expected frame and returns its length. */
  private int readHeader(byte op, int s, int count, int aux) throws IOException {
    fill(Wire.HEADER_BYTES);
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
    Failure f = failure.get();
    if (f != null) {
      throw new FailureSignal(f);
    }
    if (Thread.currentThread().isInterrupted()) {
      throw new FailureSignal(Failure.error(rank, List.of(), "interrupted while receiving from rank " + previous));
    }
    try {
      readable.select(Math.max(1, Math.min(TimeUnit.NANOSECONDS.toMillis(left), READ_POLL_MILLIS)));
      readable.selectedKeys().clear();
    } catch (ClosedSelectorException e) {
      // close() from another thread: it recorded why before it closed the selector
      Failure closed = failure.get();
      throw new FailureSignal(closed != null ? closed : Failure.closed(rank));
    }
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
          Failure.timeout(rank, List.of(previous), "no data from rank " + previous + " within " + timeoutText), e);
    } catch (EOFException e) {
      throw failed(prefix, Failure.error(rank, List.of(previous), "rank " + previous + " closed its connection"), e);
    } catch (IOException e) {
      throw failed(prefix, Failure.error(rank, List.of(previous),
          "connection from rank " + previous + " failed: " + RingConnector.describe(e)), e);
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
    // Forward: pending data is useless now; the notice goes out right after the frame being written, if any.
    returnQueuedBuffers();
    byte[] notice = Wire.abortFrame(f, seq);
    sendQueue.add(new OutFrame(ByteBuffer.wrap(notice), false));
    sendQueue.add(STOP);
    sendBackward(notice);
    if (Thread.currentThread() != sender) {
      join(sender, ABORT_GRACE_MILLIS);
    }
    closeConnections(false);
    return f;
  }

  private void returnQueuedBuffers() {
    OutFrame frame;
    while ((frame = sendQueue.poll()) != null) {
      if (frame.pooled()) {
        freeBuffers.offer(frame.buffer());
      }
    }
  }

  /** Best effort, and brief: the reverse direction carries nothing else, so the notice normally fits at once. */
  private void sendBackward(byte[] notice) {
    synchronized (backLock) {
      try {
        ByteBuffer buffer = ByteBuffer.wrap(notice);
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ABORT_GRACE_MILLIS);
        while (buffer.hasRemaining() && in.write(buffer) >= 0) {
          if (buffer.hasRemaining()) {
            if (System.nanoTime() - deadline > 0) {
              LOG.debug("Cannot tell rank {} that {} stopped: it takes no data", previous, self);
              return;
            }
            Thread.sleep(1);
          }
        }
      } catch (IOException e) {
        LOG.debug("Cannot tell rank {} that {} stopped: {}", previous, self, RingConnector.describe(e));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  private void sendLoop() {
    try {
      while (true) {
        OutFrame frame = sendQueue.take();
        if (frame == STOP) {
          return;
        }
        ByteBuffer buffer = frame.buffer();
        while (buffer.hasRemaining()) {
          out.write(buffer);
        }
        if (frame.pooled()) {
          freeBuffers.offer(buffer);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException e) {
      if (failure.get() == null) {
        Failure gone = nextGone;
        recordFailure(gone != null ? gone : Failure.error(rank, List.of(next),
            "cannot send to rank " + next + ": " + RingConnector.describe(e)));
      }
    }
  }

  /** Waits for an abort notice from the next rank, or for its connection to end. */
  private void watchLoop() {
    try {
      byte op = watchIn.readByte();
      watchIn.readInt(); // seq
      watchIn.readInt(); // count
      watchIn.readInt(); // aux
      int length = watchIn.readInt();
      if (op != Wire.ABORT) {
        recordFailure(Failure.error(rank, List.of(next),
            "out of sync with rank " + next + ": received " + Wire.opName(op) + " on the reverse connection"));
        return;
      }
      Failure f = Wire.readAbort(watchIn, length);
      if (f.kind() == Failure.Kind.CLOSED) {
        nextGone = f;
      } else {
        recordFailure(f);
      }
    } catch (IOException e) {
      if (failure.get() == null && nextGone == null) {
        nextGone = e instanceof EOFException
            ? Failure.error(rank, List.of(next), "rank " + next + " closed its connection")
            : Failure.error(rank, List.of(next),
                "connection to rank " + next + " failed: " + RingConnector.describe(e));
        LOG.debug("{}: {}", self, nextGone.describeAt(rank));
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
      // Orderly: what is queued (the end of the last operation) still goes out, then the notice.
      byte[] notice = Wire.abortFrame(mine, seq);
      sendQueue.add(new OutFrame(ByteBuffer.wrap(notice), false));
      sendQueue.add(STOP);
      long drainMillis = Math.min(TimeUnit.NANOSECONDS.toMillis(timeoutNanos), MAX_CLOSE_DRAIN_MILLIS);
      join(sender, drainMillis);
      if (sender.isAlive()) {
        LOG.warn("Closing {}: rank {} did not take the last frames within {} ms", self, next, drainMillis);
      }
      sendBackward(notice);
    }
    closeConnections(true);
    try {
      readable.close();
    } catch (IOException e) {
      LOG.debug("Cannot close the selector of {}: {}", self, RingConnector.describe(e));
    }
    sender.interrupt();
    join(sender, 1_000);
    join(watcher, 1_000);
    if (sender.isAlive() || watcher.isAlive()) {
      LOG.warn("Closing {}: its threads did not stop within 1 s", self);
    }
  }

  private void closeConnections(boolean logFailures) {
    for (Socket socket : Arrays.asList(inSocket, outSocket)) {
      try {
        socket.close();
      } catch (IOException e) {
        if (logFailures) {
          LOG.warn("Cannot close a connection of {}: {}", self, RingConnector.describe(e));
        } else {
          LOG.debug("Cannot close a connection of {}: {}", self, RingConnector.describe(e));
        }
      }
    }
    readable.wakeup(); // an op thread waiting for data sees the failure now
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
