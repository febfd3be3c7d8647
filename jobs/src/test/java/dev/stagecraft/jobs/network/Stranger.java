package dev.stagecraft.jobs.network;

import dev.stagecraft.training.collective.PeerAddress;
import dev.stagecraft.training.rendezvous.Rendezvous;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;

/**
 * A stranger on the network, run in a host of its own: for every {@code host:port} given, it tries what an intruder
 * without the run's secret can — random bytes, a collective handshake with a made-up proof, a rendezvous registration
 * with a wrong secret — and prints one line per target with what it was answered (printable bytes only), so that the
 * test can check that it learned nothing and got nowhere.
 */
public final class Stranger {
  private static final SecureRandom RANDOM = new SecureRandom();
  private static final int COLLECTIVE_MAGIC = 0x53544743; // "STGC"

  private Stranger() {}

  public static void main(String[] args) throws Exception {
    String self = args[0];
    // All targets at once: the run it disturbs does not last long.
    java.util.List<Thread> threads = new java.util.ArrayList<>();
    for (int i = 1; i < args.length; i++) {
      PeerAddress target = PeerAddress.parse(args[i]);
      Thread t = new Thread(() -> {
        String line;
        try {
          line = "target " + target + " | garbage: " + garbage(target) + " | hello: " + hello(target)
              + " | rendezvous: " + rendezvous(target, self);
        } catch (IOException e) {
          line = "target " + target + " | failed: " + e;
        }
        synchronized (System.out) {
          System.out.println(line);
        }
      });
      t.start();
      threads.add(t);
    }
    for (Thread t : threads) {
      t.join();
    }
  }

  private static String garbage(PeerAddress target) {
    byte[] bytes = new byte[256];
    RANDOM.nextBytes(bytes);
    return exchange(target, bytes, false);
  }

  /** A collective client hello with a made-up group, and a proof made with a secret it does not have. */
  private static String hello(PeerAddress target) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    DataOutputStream h = new DataOutputStream(b);
    byte[] group = "guess".getBytes(StandardCharsets.UTF_8);
    h.writeInt(COLLECTIVE_MAGIC);
    h.writeByte(1);
    h.writeShort(group.length);
    h.write(group);
    h.writeInt(2);
    h.writeInt(1);
    byte[] nonceAndProof = new byte[64];
    RANDOM.nextBytes(nonceAndProof);
    h.write(nonceAndProof);
    return exchange(target, b.toByteArray(), true);
  }

  private static String rendezvous(PeerAddress target, String self) {
    byte[] secret = new byte[32];
    RANDOM.nextBytes(secret);
    try {
      Rendezvous.Client.register(target, secret, 0, PeerAddress.parse(self + ":9"), Duration.ofSeconds(3));
      return "REGISTERED";
    } catch (IOException e) {
      return "refused (" + printable(String.valueOf(e.getMessage()).getBytes(StandardCharsets.UTF_8)) + ")";
    } catch (RuntimeException e) {
      return "refused (" + e.getClass().getSimpleName() + ")";
    }
  }

  /** Connects, reads the greeting if {@code greeted} (up to 2 s), sends {@code bytes}, and returns what came back. */
  private static String exchange(PeerAddress target, byte[] bytes, boolean greeted) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(target.host(), target.port()), 2_000);
      s.setSoTimeout(2_000);
      InputStream in = s.getInputStream();
      ByteArrayOutputStream got = new ByteArrayOutputStream();
      if (greeted) {
        readSome(in, got);
      }
      s.getOutputStream().write(bytes);
      s.getOutputStream().flush();
      readSome(in, got);
      return "answered [" + printable(got.toByteArray()) + "]";
    } catch (IOException e) {
      return "no connection (" + e.getClass().getSimpleName() + ")";
    }
  }

  private static void readSome(InputStream in, ByteArrayOutputStream got) throws IOException {
    byte[] buf = new byte[4096];
    try {
      int n = in.read(buf);
      if (n > 0) {
        got.write(buf, 0, n);
      }
    } catch (SocketTimeoutException e) {
      // nothing (more) to say
    } catch (IOException e) {
      got.write(("<" + e.getClass().getSimpleName() + ">").getBytes(StandardCharsets.UTF_8));
    }
  }

  /** Printable ASCII runs of 4 or more characters, as {@code strings} would show: what a reader could learn. */
  static String printable(byte[] bytes) {
    StringBuilder out = new StringBuilder();
    StringBuilder run = new StringBuilder();
    for (byte b : bytes) {
      char c = (char) (b & 0xff);
      if (c >= 0x20 && c < 0x7f) {
        run.append(c);
      } else {
        if (run.length() >= 4) {
          out.append(run).append(' ');
        }
        run.setLength(0);
      }
    }
    if (run.length() >= 4) {
      out.append(run);
    }
    return out.toString().trim();
  }
}
