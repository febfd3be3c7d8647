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

  private FakeRank(Socket in, Socket out) {
    this.in = in;
    this.out = out;
  }

  /** Joins {@code group} as {@code rank}, whose listening socket it uses; the real ranks connect concurrently. */
  static FakeRank join(TestGroup group, int rank) throws Exception {
    Handshake handshake = new Handshake(group.groupId, group.size, rank, TestGroup.SECRET);
    int next = (rank + 1) % group.size;
    int previous = (rank + group.size - 1) % group.size;
    Future<Socket> outgoing = group.submit(() -> {
      Socket s = new Socket();
      s.connect(group.peers.get(next).resolve(), 5_000);
      s.setSoTimeout(5_000);
      handshake.connectTo(s, next);
      return s;
    });
    ServerSocket server = group.servers.get(rank);
    server.setSoTimeout(5_000);
    Socket incoming = server.accept();
    incoming.setSoTimeout(5_000);
    handshake.acceptFrom(incoming, previous);
    return new FakeRank(incoming, TestGroup.get(outgoing));
  }

  /** Writes a frame header to the next rank, and {@code payloadBytes} of zeros after it. */
  void sendFrame(byte op, int seq, int count, int aux, int length, int payloadBytes) throws IOException {
    DataOutputStream d = new DataOutputStream(out.getOutputStream());
    d.writeByte(op);
    d.writeInt(seq);
    d.writeInt(count);
    d.writeInt(aux);
    d.writeInt(length);
    d.write(new byte[payloadBytes]);
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
