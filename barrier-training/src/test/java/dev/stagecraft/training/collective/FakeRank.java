package dev.stagecraft.training.collective;

import java.io.DataOutputStream;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.concurrent.Future;

/**
 * A rank played by hand: it authenticates with the given secret like a real one, then writes whatever frames the
 * test wants and can die abruptly. A hand-written fake, in the spirit of "a real service, a fake peer".
 */
final class FakeRank implements AutoCloseable {
  /** The connection from the previous rank (accepted). */
  final Socket in;
  /** The connection to the next rank (connected). */
  final Socket out;
  /** Seals its frames to the next rank as a real rank would. */
  private final FrameSeal outSeal;

  private FakeRank(Socket in, Socket out, Handshake.Session toNext) {
    this.in = in;
    this.out = out;
    this.outSeal = FrameSeal.of(toNext.integrity(), toNext.clientToServer());
  }

  /** Joins {@code group} as {@code rank}, whose listening socket it uses; the real ranks connect concurrently. */
  static FakeRank join(TestGroup group, int rank) throws Exception {
    Handshake handshake = new Handshake(group.groupId, group.size, rank, TestGroup.SECRET, group.integrity);
    int next = (rank + 1) % group.size;
    int previous = (rank + group.size - 1) % group.size;
    Socket s = new Socket();
    Future<Handshake.Session> outgoing = group.submit(() -> {
      s.connect(group.peers.get(next).resolve(), 5_000);
      s.setSoTimeout(5_000);
      return handshake.connectTo(s, next);
    });
    ServerSocket server = group.servers.get(rank);
    server.setSoTimeout(5_000);
    Socket incoming = server.accept();
    incoming.setSoTimeout(5_000);
    handshake.acceptFrom(incoming, previous);
    Handshake.Session toNext = TestGroup.get(outgoing);
    return new FakeRank(incoming, s, toNext);
  }

  /**
   * Writes a frame header to the next rank, and {@code payloadBytes} of zeros after it: a whole frame, sealed, if
   * that is its length, else the start of one (a rank dying mid-frame).
   */
  void sendFrame(byte op, int seq, int count, int aux, int length, int payloadBytes) throws IOException {
    java.nio.ByteBuffer frame = java.nio.ByteBuffer.allocate(Wire.HEADER_BYTES + length + outSeal.tagBytes());
    Wire.putHeader(frame, op, seq, count, aux, length);
    frame.position(Wire.HEADER_BYTES + length).flip();
    boolean whole = payloadBytes == length;
    if (whole) {
      outSeal.seal(frame);
    }
    DataOutputStream d = new DataOutputStream(out.getOutputStream());
    d.write(frame.array(), 0, whole ? frame.limit() : Wire.HEADER_BYTES + payloadBytes);
    d.flush();
  }

  /** Waits for the first frame header from the previous rank: it has started an operation. Returns its op code. */
  byte awaitFrameHeader() throws IOException {
    java.io.DataInputStream d = new java.io.DataInputStream(in.getInputStream());
    byte op = d.readByte();
    d.readNBytes(Wire.HEADER_BYTES - 1);
    return op;
  }

  /** Dies like a killed process: the kernel closes both connections, nobody says goodbye. */
  void crash() throws IOException {
    in.close();
    out.close();
  }

  @Override
  public void close() throws IOException {
    crash();
  }
}
