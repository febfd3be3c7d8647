package dev.stagecraft.jobs.bench;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The physical limit a collective on one machine runs against: loopback TCP, measured here the best way this JVM can
 * move bytes — blocking socket channels over direct buffers (no staging copy in the JDK), a sender and a receiver
 * thread per stream, and the ring's own chunk and socket buffer sizes, so the limit differs from the ring only in
 * what the ring adds (framing, arithmetic, one thread alternating send and receive).
 */
final class LoopbackLimit {
  /** The ring's chunk payload ({@code Wire.CHUNK_BYTES} in barrier-training, package-private there). */
  static final int CHUNK_BYTES = 1 << 20;
  /** The ring's socket send and receive buffers ({@code RingConnector.SOCKET_BUFFER_BYTES}). */
  static final int SOCKET_BUFFER_BYTES = 4 << 20;

  private LoopbackLimit() {}

  /** Median gigabits per second of moving {@code bytes} over one loopback TCP connection, {@code reps} times. */
  static double gbps(long bytes, int reps) throws Exception {
    return streamsGbps(bytes, reps, 1);
  }

  /**
   * The ring's traffic with no arithmetic: {@code n} loopback connections in a ring, each carrying {@code bytes} (what
   * one rank of an all-reduce sends) at the same time. Returns the bus bandwidth that gives, in gigabits per second
   * (bytes × 8 ÷ the median time until the last stream is done). On one machine the streams share the cores that
   * copy their bytes, so this is the floor a ring of {@code n} ranks here cannot beat.
   */
  static double ringTrafficGbps(long bytes, int reps, int n) throws Exception {
    return streamsGbps(bytes, reps, n);
  }

  /** {@code n} concurrent streams (rank i → rank i + 1 mod n; n = 1: one connection), each moving {@code bytes}. */
  private static double streamsGbps(long bytes, int reps, int n) throws Exception {
    List<ServerSocketChannel> servers = new ArrayList<>();
    List<SocketChannel> outs = new ArrayList<>();
    List<SocketChannel> ins = new ArrayList<>();
    ExecutorService pool = Executors.newFixedThreadPool(2 * n);
    try {
      for (int i = 0; i < n; i++) {
        ServerSocketChannel server = ServerSocketChannel.open();
        servers.add(server);
        // Before bind, as the ring does, so accepted sockets get the window scaling for it.
        server.setOption(StandardSocketOptions.SO_RCVBUF, SOCKET_BUFFER_BYTES);
        server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
      }
      for (int i = 0; i < n; i++) {
        SocketChannel out = SocketChannel.open();
        outs.add(tune(out));
        out.connect(servers.get((i + 1) % n).getLocalAddress());
        ins.add(tune(servers.get((i + 1) % n).accept()));
      }
      double[] seconds = new double[reps];
      for (int r = -1; r < reps; r++) { // r = -1: warm-up
        CyclicBarrier start = new CyclicBarrier(2 * n + 1);
        List<Future<?>> streams = new ArrayList<>();
        for (int i = 0; i < n; i++) {
          SocketChannel out = outs.get(i);
          SocketChannel in = ins.get(i);
          streams.add(pool.submit(() -> move(start, bytes, out::write)));
          streams.add(pool.submit(() -> move(start, bytes, buffer -> {
            int got = in.read(buffer);
            if (got < 0) {
              throw new IOException("sender closed early");
            }
            return got;
          })));
        }
        start.await();
        long begin = System.nanoTime();
        for (Future<?> f : streams) {
          f.get();
        }
        if (r >= 0) {
          seconds[r] = (System.nanoTime() - begin) / 1e9;
        }
      }
      return bytes * 8 / Bench.median(seconds) / 1e9;
    } finally {
      pool.shutdownNow();
      for (AutoCloseable c : outs) {
        c.close();
      }
      for (AutoCloseable c : ins) {
        c.close();
      }
      for (AutoCloseable c : servers) {
        c.close();
      }
    }
  }

  /** The ring's socket options (RingConnector): no Nagle delay, 4 MiB buffers each way. */
  private static SocketChannel tune(SocketChannel channel) throws IOException {
    channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
    channel.setOption(StandardSocketOptions.SO_SNDBUF, SOCKET_BUFFER_BYTES);
    channel.setOption(StandardSocketOptions.SO_RCVBUF, SOCKET_BUFFER_BYTES);
    return channel;
  }

  private interface Transfer {
    int apply(ByteBuffer buffer) throws IOException;
  }

  /** Moves {@code bytes} in chunks of {@link #CHUNK_BYTES} through one direct buffer, once all streams are ready. */
  private static Void move(CyclicBarrier start, long bytes, Transfer transfer) throws Exception {
    ByteBuffer buffer = ByteBuffer.allocateDirect(CHUNK_BYTES);
    start.await();
    long left = bytes;
    while (left > 0) {
      buffer.clear().limit((int) Math.min(buffer.capacity(), left));
      while (buffer.hasRemaining()) {
        left -= transfer.apply(buffer);
      }
    }
    return null;
  }
}
