package dev.stagecraft.training.rendezvous;

import dev.stagecraft.training.collective.PeerAddress;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The driver's rendezvous service for one training run, as XGBoost's tracker and Horovod's driver service: each
 * barrier task connects, proves it knows the run's secret, and tells its rank and listening address; once every
 * rank has registered, each gets the full address list. Costs a round trip, not the ~1 s per call of
 * {@code BarrierTaskContext.allGather} (which polls with a 1 s sleep).
 *
 * <p>The same service receives progress reports: rank 0 keeps a second connection open and sends a line per report
 * ({@link Client#report}); {@code onReport} gets them on the service's thread.
 *
 * <p>Authentication: the service sends a fresh nonce; a client answers HMAC-SHA256(secret, nonce, its message); the
 * service answers with HMAC(secret, the client's nonce, its reply), so neither side accepts data from anyone without
 * the secret. A connection that fails is closed and logged (never with the secret or MACs).
 */
public final class Rendezvous implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Rendezvous.class);
  private static final int MAGIC = 0x53524456; // "SRDV"
  private static final byte REGISTER = 1;
  private static final byte REPORT = 2;
  private static final SecureRandom RANDOM = new SecureRandom();

  private final ServerSocket server;
  private final int worldSize;
  private final byte[] secret;
  private final Consumer<String> onReport;
  private final PeerAddress[] peers;
  private final CompletableFuture<List<PeerAddress>> complete = new CompletableFuture<>();
  private final Thread acceptor;
  private volatile boolean closed;

  private Rendezvous(ServerSocket server, int worldSize, byte[] secret, Consumer<String> onReport) {
    this.server = server;
    this.worldSize = worldSize;
    this.secret = secret.clone();
    this.onReport = onReport;
    this.peers = new PeerAddress[worldSize];
    this.acceptor = new Thread(this::acceptLoop, "stagecraft-rendezvous");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  /** Starts the service on {@code bind} (an ephemeral port) for {@code worldSize} ranks. */
  public static Rendezvous start(InetAddress bind, int worldSize, byte[] secret, Consumer<String> onReport)
      throws IOException {
    if (worldSize < 1) {
      throw new IllegalArgumentException("Invalid world size: " + worldSize + " (expected at least 1)");
    }
    ServerSocket s = new ServerSocket();
    s.bind(new InetSocketAddress(bind, 0));
    return new Rendezvous(s, worldSize, secret, onReport);
  }

  /** Where tasks reach the service. */
  public PeerAddress address() {
    return new PeerAddress(server.getInetAddress().getHostAddress(), server.getLocalPort());
  }

  /** A new per-run secret (32 random bytes). */
  public static byte[] newSecret() {
    byte[] s = new byte[32];
    RANDOM.nextBytes(s);
    return s;
  }

  private void acceptLoop() {
    while (!closed) {
      try {
        Socket s = server.accept();
        Thread t = new Thread(() -> serve(s), "stagecraft-rendezvous-conn");
        t.setDaemon(true);
        t.start();
      } catch (IOException e) {
        if (!closed) {
          LOG.warn("Rendezvous stopped accepting: {}", e.toString());
        }
        return;
      }
    }
  }

  private void serve(Socket s) {
    try (s) {
      s.setTcpNoDelay(true);
      DataInputStream in = new DataInputStream(s.getInputStream());
      DataOutputStream out = new DataOutputStream(s.getOutputStream());
      byte[] nonce = nonce();
      out.writeInt(MAGIC);
      out.write(nonce);
      out.flush();
      s.setSoTimeout(10_000);
      if (in.readInt() != MAGIC) {
        throw new IOException("not a Stagecraft rendezvous client");
      }
      byte kind = in.readByte();
      int rank = in.readInt();
      String payload = in.readUTF();
      byte[] clientNonce = in.readNBytes(32);
      byte[] mac = in.readNBytes(32);
      if (!MessageDigest.isEqual(mac, mac(secret, "client", nonce, new byte[] {kind}, ints(rank), utf8(payload),
          clientNonce))) {
        LOG.warn("Rejected a rendezvous connection from {}: authentication failed", s.getRemoteSocketAddress());
        return;
      }
      if (rank < 0 || rank >= worldSize) {
        LOG.warn("Rejected a rendezvous connection from {}: rank {} outside 0..{}", s.getRemoteSocketAddress(), rank,
            worldSize - 1);
        return;
      }
      s.setSoTimeout(0);
      if (kind == REGISTER) {
        register(rank, PeerAddress.parse(payload));
        List<PeerAddress> all = complete.get();
        String reply = join(all);
        out.writeUTF(reply);
        out.write(mac(secret, "server", clientNonce, utf8(reply)));
        out.flush();
        in.read(); // wait until the client has read the reply and closed
      } else if (kind == REPORT) {
        while (!closed) {
          String line = in.readUTF();
          onReport.accept(line);
        }
      }
    } catch (java.io.EOFException e) {
      // the client finished
    } catch (IOException | InterruptedException | ExecutionException e) {
      if (!closed) {
        LOG.debug("Rendezvous connection ended: {}", e.toString());
      }
    }
  }

  private synchronized void register(int rank, PeerAddress address) {
    if (peers[rank] != null && !peers[rank].equals(address)) {
      LOG.warn("Rank {} registered again, now at {} (was {})", rank, address, peers[rank]);
    }
    peers[rank] = address;
    for (PeerAddress p : peers) {
      if (p == null) {
        return;
      }
    }
    complete.complete(List.of(peers.clone()));
  }

  /**
   * Blocks until every rank has registered or {@code timeout} passes.
   *
   * @throws TimeoutException naming the ranks that did not register
   */
  public List<PeerAddress> awaitAll(Duration timeout) throws TimeoutException, InterruptedException {
    try {
      return complete.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (ExecutionException e) {
      throw new IllegalStateException(e.getCause());
    } catch (TimeoutException e) {
      throw new TimeoutException("Cannot complete the rendezvous: rank(s) " + missing() + " did not register within "
          + timeout.toSeconds() + "s");
    }
  }

  synchronized List<Integer> missing() {
    List<Integer> out = new ArrayList<>();
    for (int r = 0; r < worldSize; r++) {
      if (peers[r] == null) {
        out.add(r);
      }
    }
    return out;
  }

  @Override
  public void close() {
    closed = true;
    complete.completeExceptionally(new IOException("rendezvous closed"));
    try {
      server.close();
    } catch (IOException e) {
      LOG.warn("Cannot close the rendezvous socket: {}", e.toString());
    }
  }

  /** The task side. */
  public static final class Client {
    private Client() {}

    /**
     * Registers {@code rank} at {@code self} with the service at {@code service} and returns every rank's address
     * (index = rank) once all have registered.
     *
     * @throws IOException naming the service if it cannot be reached or does not answer within {@code timeout}
     */
    public static List<PeerAddress> register(PeerAddress service, byte[] secret, int rank, PeerAddress self,
        Duration timeout) throws IOException {
      try (Socket s = connect(service, timeout)) {
        s.setSoTimeout((int) Math.min(Integer.MAX_VALUE, timeout.toMillis()));
        DataInputStream in = new DataInputStream(s.getInputStream());
        DataOutputStream out = new DataOutputStream(s.getOutputStream());
        byte[] clientNonce = hello(in, out, secret, REGISTER, rank, self.toString());
        String reply;
        try {
          reply = in.readUTF();
        } catch (SocketTimeoutException e) {
          throw new IOException("Cannot complete the rendezvous at " + service + ": not every rank registered within "
              + timeout.toSeconds() + "s");
        } catch (java.io.EOFException e) {
          throw new IOException("Cannot complete the rendezvous at " + service + ": it closed the connection (this "
              + "task's secret or rank was refused, or the run ended)");
        }
        byte[] mac = in.readNBytes(32);
        if (!MessageDigest.isEqual(mac, mac(secret, "server", clientNonce, utf8(reply)))) {
          throw new IOException("Cannot trust the rendezvous at " + service + ": it failed authentication");
        }
        List<PeerAddress> out2 = new ArrayList<>();
        for (String p : reply.split(",")) {
          out2.add(PeerAddress.parse(p));
        }
        return List.copyOf(out2);
      }
    }

    /** Opens the report channel of {@code rank}; each call of the returned consumer sends one line. */
    public static Reporter reporter(PeerAddress service, byte[] secret, int rank, Duration timeout) throws IOException {
      Socket s = connect(service, timeout);
      DataOutputStream out = new DataOutputStream(s.getOutputStream());
      hello(new DataInputStream(s.getInputStream()), out, secret, REPORT, rank, "");
      return new Reporter(s, out);
    }

    private static byte[] hello(DataInputStream in, DataOutputStream out, byte[] secret, byte kind, int rank,
        String payload) throws IOException {
      if (in.readInt() != MAGIC) {
        throw new IOException("not a Stagecraft rendezvous service");
      }
      byte[] nonce = in.readNBytes(32);
      byte[] clientNonce = nonce();
      out.writeInt(MAGIC);
      out.writeByte(kind);
      out.writeInt(rank);
      out.writeUTF(payload);
      out.write(clientNonce);
      out.write(mac(secret, "client", nonce, new byte[] {kind}, ints(rank), utf8(payload), clientNonce));
      out.flush();
      return clientNonce;
    }

    private static Socket connect(PeerAddress service, Duration timeout) throws IOException {
      Socket s = new Socket();
      try {
        s.setTcpNoDelay(true);
        s.connect(new InetSocketAddress(service.host(), service.port()),
            (int) Math.min(Integer.MAX_VALUE, timeout.toMillis()));
        return s;
      } catch (IOException e) {
        s.close();
        throw new IOException("Cannot reach the rendezvous service at " + service + ": " + e.getMessage(), e);
      }
    }
  }

  /** Rank 0's progress channel to the driver. Best effort: a failed send is logged once and ignored. */
  public static final class Reporter implements AutoCloseable {
    private final Socket socket;
    private final DataOutputStream out;
    private boolean broken;

    Reporter(Socket socket, DataOutputStream out) {
      this.socket = socket;
      this.out = out;
    }

    public void send(String line) {
      if (broken) {
        return;
      }
      try {
        out.writeUTF(line);
        out.flush();
      } catch (IOException e) {
        broken = true;
        LOG.warn("Cannot send progress to the driver (training goes on): {}", e.toString());
      }
    }

    @Override
    public void close() {
      try {
        socket.close();
      } catch (IOException e) {
        LOG.debug("Cannot close the progress channel: {}", e.toString());
      }
    }
  }

  private static String join(List<PeerAddress> all) {
    List<String> s = new ArrayList<>();
    all.forEach(p -> s.add(p.toString()));
    return String.join(",", s);
  }

  private static byte[] nonce() {
    byte[] n = new byte[32];
    RANDOM.nextBytes(n);
    return n;
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private static byte[] ints(int v) {
    return new byte[] {(byte) (v >>> 24), (byte) (v >>> 16), (byte) (v >>> 8), (byte) v};
  }

  private static byte[] mac(byte[] secret, String role, byte[]... parts) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(secret, "HmacSHA256"));
      mac.update(utf8("stagecraft-rendezvous-v1|" + role));
      for (byte[] p : parts) {
        mac.update(ints(p.length));
        mac.update(p);
      }
      return mac.doFinal();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }
}
