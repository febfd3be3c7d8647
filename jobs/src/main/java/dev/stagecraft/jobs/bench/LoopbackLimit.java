package dev.stagecraft.jobs.bench;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.concurrent.CompletableFuture;

/** The physical limit a collective on one machine runs against: one TCP stream over loopback, measured here. */
final class LoopbackLimit {
  private LoopbackLimit() {}

  /**
   * Gigabits per second of each of {@code streams} loopback TCP connections moving {@code bytes} at the same time
   * (median of {@code reps}); on one machine they share the CPUs that copy the bytes, as a ring's streams do.
   */
  static double gbpsPerStream(long bytes, int reps, int streams) throws Exception {
    java.util.List<CompletableFuture<Double>> all = new java.util.ArrayList<>();
    for (int i = 0; i < streams; i++) {
      all.add(CompletableFuture.supplyAsync(() -> {
        try {
          return gbps(bytes, reps);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      }));
    }
    double sum = 0;
    for (CompletableFuture<Double> f : all) {
      sum += f.get();
    }
    return sum / streams;
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
