package dev.stagecraft.training.collective;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;

/**
 * A host on the path: a TCP relay between one client and one server that forwards both directions byte for byte,
 * records the first bytes the client sends, and can flip one byte of the client's stream at a given offset (a
 * man-in-the-middle that injects into the stream after the handshake).
 */
public final class Relay implements AutoCloseable {
  private final ServerSocket server;
  private final PeerAddress target;
  private final long flipAt;
  private final int flipMask;
  private final ByteArrayOutputStream recorded = new ByteArrayOutputStream();
  private final int recordBytes;
  private final List<Socket> sockets = new ArrayList<>();
  private final Thread acceptor;
  private volatile boolean flipped;

  /**
   * @param flipAt offset in the client's stream of the byte to flip (xor {@code flipMask}); -1: none
   * @param recordBytes how many of the client's first bytes to keep
   */
  public Relay(PeerAddress target, long flipAt, int flipMask, int recordBytes) throws IOException {
    this.server = new ServerSocket(0, 4, InetAddress.getLoopbackAddress());
    this.target = target;
    this.flipAt = flipAt;
    this.flipMask = flipMask;
    this.recordBytes = recordBytes;
    this.acceptor = new Thread(this::acceptOne, "test-relay");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  /** Where the client connects instead of the target. */
  public PeerAddress address() {
    return new PeerAddress(server.getInetAddress().getHostAddress(), server.getLocalPort());
  }

  /** The first bytes the client sent (at most {@code recordBytes}). */
  public synchronized byte[] recorded() {
    return recorded.toByteArray();
  }

  boolean flipped() {
    return flipped;
  }

  private void acceptOne() {
    try {
      Socket client = server.accept();
      Socket upstream = new Socket(target.host(), target.port());
      synchronized (sockets) {
        sockets.add(client);
        sockets.add(upstream);
      }
      InputStream fromServer = upstream.getInputStream();
      OutputStream toClient = client.getOutputStream();
      Thread back = new Thread(() -> pump(fromServer, toClient, false), "test-relay-s2c");
      back.setDaemon(true);
      back.start();
      pump(client.getInputStream(), upstream.getOutputStream(), true);
    } catch (IOException e) {
      // closed by the test
    }
  }

  private void pump(InputStream in, OutputStream out, boolean fromClient) {
    byte[] buffer = new byte[64 * 1024];
    long offset = 0;
    try (in; out) {
      for (int n; (n = in.read(buffer)) >= 0; ) {
        if (fromClient) {
          record(buffer, n, offset);
          if (flipAt >= offset && flipAt < offset + n) {
            buffer[(int) (flipAt - offset)] ^= (byte) flipMask;
            flipped = true;
          }
        }
        out.write(buffer, 0, n);
        out.flush();
        offset += n;
      }
    } catch (IOException e) {
      // one side closed
    }
  }

  private synchronized void record(byte[] buffer, int n, long offset) {
    if (offset < recordBytes) {
      recorded.write(buffer, 0, (int) Math.min(n, recordBytes - offset));
    }
  }

  @Override
  public void close() throws IOException {
    server.close();
    synchronized (sockets) {
      for (Socket s : sockets) {
        s.close();
      }
    }
  }
}
