package dev.stagecraft.training.collective;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ProtocolException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;

/**
 * The frame format after the handshake. Header (17 bytes, big-endian): op code (1), sequence number of the
 * collective call (4), the sender's count argument (4: array length), the sender's aux argument (4: broadcast
 * root), payload length (4). Float payloads are little-endian, the native order of x86 and ARM, so encoding is a
 * bulk copy through {@link ByteBuffer#asFloatBuffer()}. Under {@link FrameIntegrity#MAC} or {@link
 * FrameIntegrity#ENCRYPT} a 16-byte tag follows every frame's payload ({@link FrameSeal}).
 */
final class Wire {
  static final int HEADER_BYTES = 17;
  /**
   * Payload of one chunk: large enough to amortise the hand-off to the sender thread and the syscalls, small enough
   * to pipeline. On 2 vCPUs 1 MiB beat 256 KiB by about 10 % at both 1M and 16M floats (two loopback ranks).
   */
  static final int CHUNK_BYTES = 1024 * 1024;
  static final int CHUNK_FLOATS = CHUNK_BYTES / Float.BYTES;
  static final int MAX_ABORT_BYTES = 8 * 1024;
  /** The longest payload of any frame: a chunk of floats or an allGather item. */
  static final int MAX_PAYLOAD_BYTES = Math.max(CHUNK_BYTES, Communicator.MAX_ALL_GATHER_BYTES);
  static final ByteOrder FLOAT_ORDER = ByteOrder.LITTLE_ENDIAN;

  static final byte ALL_REDUCE_SUM = 1;
  static final byte ALL_REDUCE_MEAN = 2;
  static final byte BROADCAST = 3;
  static final byte BARRIER = 4;
  static final byte ALL_GATHER = 5;
  /** A rank failed or closed; payload = {@link Failure}. Sent forward on the data stream and backward on the
   * otherwise unused reverse direction of the connection from the previous rank. */
  static final byte ABORT = 6;
  /**
   * A chunk of a {@link PipeLinks} message: seq = the message's number in its direction (from 1), count = the
   * message's length in floats, aux = its tag; a message of n floats is {@link RingCommunicator#chunks} frames.
   */
  static final byte PIPE_DATA = 7;

  private static final int MAX_REASON_CHARS = 2_000;

  private Wire() {}

  static String opName(byte op) {
    return switch (op) {
      case ALL_REDUCE_SUM -> "allReduceSum";
      case ALL_REDUCE_MEAN -> "allReduceMean";
      case BROADCAST -> "broadcast";
      case BARRIER -> "barrier";
      case ALL_GATHER -> "allGather";
      case ABORT -> "abort";
      case PIPE_DATA -> "pipeline data";
      default -> String.format("unknown frame type 0x%02x", op);
    };
  }

  static void putHeader(byte[] frame, byte op, int seq, int count, int aux, int length) {
    ByteBuffer.wrap(frame, 0, HEADER_BYTES).put(op).putInt(seq).putInt(count).putInt(aux).putInt(length);
  }

  /** Puts a header at {@code frame}'s position and advances it. */
  static void putHeader(ByteBuffer frame, byte op, int seq, int count, int aux, int length) {
    frame.order(ByteOrder.BIG_ENDIAN).put(op).putInt(seq).putInt(count).putInt(aux).putInt(length);
  }

  /** Puts {@code n} floats of {@code src} from {@code srcOff} at {@code dst}'s position (one bulk copy) and advances it. */
  static void encodeFloats(float[] src, int srcOff, int n, ByteBuffer dst) {
    dst.order(FLOAT_ORDER).asFloatBuffer().put(src, srcOff, n);
    dst.position(dst.position() + n * Float.BYTES);
  }

  /** A whole frame (header and payload) telling a neighbour about {@code failure}. */
  static byte[] abortFrame(Failure failure, int seq) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(128);
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.write(new byte[HEADER_BYTES]);
      out.writeByte(failure.kind().ordinal());
      out.writeInt(failure.originRank());
      out.writeInt(failure.ranks().size());
      for (int r : failure.ranks()) {
        out.writeInt(r);
      }
      String reason = failure.reason();
      out.writeUTF(reason.length() > MAX_REASON_CHARS ? reason.substring(0, MAX_REASON_CHARS) + "…" : reason);
    } catch (IOException e) {
      throw new UncheckedIOException(e); // cannot happen in memory
    }
    byte[] frame = bytes.toByteArray();
    putHeader(frame, ABORT, seq, 0, 0, frame.length - HEADER_BYTES);
    return frame;
  }

  /**
   * Writes a small notice on a non-blocking channel until it is out; false if {@code deadlineNanos} ({@link
   * System#nanoTime()}) passed first because the peer takes no data (then part of it may have gone out).
   */
  static boolean writeBefore(SocketChannel channel, byte[] notice, long deadlineNanos)
      throws IOException, InterruptedException {
    ByteBuffer buffer = ByteBuffer.wrap(notice);
    while (buffer.hasRemaining() && channel.write(buffer) >= 0) {
      if (buffer.hasRemaining()) {
        if (System.nanoTime() - deadlineNanos > 0) {
          return false;
        }
        Thread.sleep(1); // rare and short: the notice normally fits in the socket buffer at once
      }
    }
    return true;
  }

  static void checkAbortLength(int length) throws ProtocolException {
    if (length < 0 || length > MAX_ABORT_BYTES) {
      throw new ProtocolException("abort frame of " + length + " bytes (expected at most " + MAX_ABORT_BYTES + ")");
    }
  }

  /** The failure an abort frame's payload describes. */
  static Failure parseAbort(byte[] payload) throws IOException {
    int length = payload.length;
    DataInputStream p = new DataInputStream(new java.io.ByteArrayInputStream(payload));
    int kind = p.readUnsignedByte();
    if (kind >= Failure.Kind.values().length) {
      throw new ProtocolException("abort frame of unknown kind " + kind);
    }
    int origin = p.readInt();
    int count = p.readInt();
    if (count < 0 || count > length / Integer.BYTES) {
      throw new ProtocolException("abort frame naming " + count + " ranks");
    }
    List<Integer> ranks = new ArrayList<>(count);
    for (int i = 0; i < count; i++) {
      ranks.add(p.readInt());
    }
    String reason = p.readUTF();
    return new Failure(Failure.Kind.values()[kind], origin, ranks, reason);
  }
}
