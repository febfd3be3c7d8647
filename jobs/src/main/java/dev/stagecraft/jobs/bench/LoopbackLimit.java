package dev.stagecraft.jobs.bench;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/** The physical limit a collective on one machine runs against: one TCP stream over loopback, measured here. */
final class LoopbackLimit {
  private LoopbackLimit() {}

  /**
   * The ring's traffic with no arithmetic: {@code n} loopback connections in a ring, each carrying {@code bytes} (what
   * one rank of an all-reduce sends) at the same time, through direct buffers. Returns the bus bandwidth that gives,
   * in gigabits per second (bytes × 8 ÷ the median time until the last stream is done). On one machine the streams
   * share the cores that copy their bytes, so this is the floor a ring of {@code n} ranks here cannot beat.
   */
  static double ringTrafficGbps(long bytes, int reps, int n) throws Exception {
    List<ServerSocketChannel> servers = new ArrayList<>();
    List<SocketChannel> outs = new ArrayList<>();
    List<SocketChannel> ins = new ArrayList<>();
    ExecutorService pool = Executors.newFixedThreadPool(2 * n);
    try {
      for (int i = 0; i < n; i++) {
        ServerSocketChannel server = ServerSocketChannel.open();
        servers.add(server);
        server.socket().setReceiveBufferSize(4 << 20);
        server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
      }
      for (int i = 0; i < n; i++) { // rank i sends to rank i + 1
        SocketChannel out = SocketChannel.open();
        outs.add(out);
        out.socket().setSendBufferSize(4 << 20);
        out.socket().setTcpNoDelay(true);
        out.connect(servers.get((i + 1) % n).getLocalAddress());
        ins.add(servers.get((i + 1) % n).accept());
      }
      double[] seconds = new double[reps];
      for (int r = -1; r < reps; r++) { // r = -1: warm-up
        CyclicBarrier start = new CyclicBarrier(2 * n + 1);
        List<Future<?>> streams = new ArrayList<>();
        for (int i = 0; i < n; i++) {
          SocketChannel out = outs.get(i);
          SocketChannel in = ins.get(i);
          streams.add(pool.submit(() -> move(start, bytes, buffer -> out.write(buffer))));
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

  private interface Transfer {
    int apply(ByteBuffer buffer) throws IOException;
  }

  private static Void move(CyclicBarrier start, long bytes, Transfer transfer) throws Exception {
    ByteBuffer buffer = ByteBuffer.allocateDirect(1 << 20);
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

  /** Median gigabits per second of moving {@code bytes} over one loopback TCP connection, {@code reps} times. */
  static double gbps(long bytes, int reps) throws Exception {
    try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      server.setReceiveBufferSize(4 << 20);
      CompletableFuture<Void> sink = CompletableFuture.runAsync(() -> {
        try (Socket s = server.accept(); InputStream in = s.getInputStream();
            OutputStream ack = s.getOutputStream()) {
          byte[] buf = new byte[1 << 20];
          for (int r = 0; r < reps + 1; r++) {
            long left = bytes;
            while (left > 0) {
              int n = in.read(buf, 0, (int) Math.min(buf.length, left));
              if (n < 0) {
                throw new IOException("sender closed early");
              }
              left -= n;
            }
            ack.write(1);
            ack.flush();
          }
        } catch (IOException e) {
          throw new RuntimeException(e);
        }
      });
      double[] seconds = new double[reps];
      try (Socket s = new Socket(InetAddress.getLoopbackAddress(), server.getLocalPort())) {
        s.setSendBufferSize(4 << 20);
        s.setTcpNoDelay(true);
        OutputStream out = s.getOutputStream();
        InputStream ack = s.getInputStream();
        byte[] buf = new byte[1 << 20];
        for (int r = -1; r < reps; r++) { // r = -1: warm-up
          long start = System.nanoTime();
          long left = bytes;
          while (left > 0) {
            int n = (int) Math.min(buf.length, left);
            out.write(buf, 0, n);
            left -= n;
          }
          out.flush();
          if (ack.read() < 0) {
            throw new IOException("receiver closed early");
          }
          if (r >= 0) {
            seconds[r] = (System.nanoTime() - start) / 1e9;
          }
        }
      }
      sink.get();
      return bytes * 8 / Bench.median(seconds) / 1e9;
    }
  }

}
