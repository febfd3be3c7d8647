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
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.Semaphore;
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
 * the secret. A connection that fails is closed and logged (never with the secret or MACs); a client that has not
 * authenticated is told nothing (the connection just closes), not even which rank or check it failed.
 *
 * <p>Bounded: at most {@link #maxConnections(int)} connections are served at once, each on a pooled thread, and a
 * connection must authenticate within {@link #HELLO_TIMEOUT} or it is dropped; connections beyond the cap are
 * closed at once and logged. A rank whose connection is refused retries until its timeout, so strangers that connect
 * and stay silent delay the real ranks by at most the hello timeout but cannot keep them out.
 */
public final class Rendezvous implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Rendezvous.class);
  private static final int MAGIC = 0x53524456; // "SRDV"
  private static final byte REGISTER = 1;
  private static final byte REPORT = 2;
  private static final SecureRandom RANDOM = new SecureRandom();
  /** How long a connection may take to authenticate: a real rank answers the greeting at once. */
  static final Duration HELLO_TIMEOUT = Duration.ofSeconds(5);
  /** Shortest interval between two log lines about refused connections (a flood logs a count, not a line each). */
  private static final long REFUSAL_LOG_NANOS = TimeUnit.SECONDS.toNanos(1);
  static final String CONNECTION_THREAD = "stagecraft-rendezvous-conn";
  private static final long FIRST_RETRY_MILLIS = 50;
  private static final long MAX_RETRY_MILLIS = 1_000;

  private final ServerSocket server;
  private final int worldSize;
  private final byte[] secret;
  private final Consumer<String> onReport;
  private final PeerAddress[] peers;
  private final CompletableFuture<List<PeerAddress>> complete = new CompletableFuture<>();
  private final Thread acceptor;
  private final int maxConnections;
  private final Semaphore slots;
  private final ExecutorService connections;
  private final Set<Socket> open = ConcurrentHashMap.newKeySet();
  private final int helloMillis;
  private int refusedSinceLog;
  private long lastRefusalLog;
  private volatile boolean closed;

  private Rendezvous(ServerSocket server, int worldSize, byte[] secret, Consumer<String> onReport,
      Duration helloTimeout) {
    this.server = server;
    this.worldSize = worldSize;
    this.secret = secret.clone();
    this.onReport = onReport;
    this.peers = new PeerAddress[worldSize];
    this.helloMillis = (int) Math.min(Integer.MAX_VALUE, helloTimeout.toMillis());
    this.maxConnections = maxConnections(worldSize);
    this.slots = new Semaphore(maxConnections);
    this.connections = Executors.newFixedThreadPool(maxConnections, r -> {
      Thread t = new Thread(r, CONNECTION_THREAD);
      t.setDaemon(true);
      return t;
    });
    this.acceptor = new Thread(this::acceptLoop, "stagecraft-rendezvous");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  /** Starts the service on {@code bind} (an ephemeral port) for {@code worldSize} ranks. */
  public static Rendezvous start(InetAddress bind, int worldSize, byte[] secret, Consumer<String> onReport)
      throws IOException {
    return start(bind, worldSize, secret, onReport, HELLO_TIMEOUT);
  }

  /** As {@link #start(InetAddress, int, byte[], Consumer)}, with another hello timeout (tests). */
  static Rendezvous start(InetAddress bind, int worldSize, byte[] secret, Consumer<String> onReport,
      Duration helloTimeout) throws IOException {
    if (worldSize < 1) {
      throw new IllegalArgumentException("Invalid world size: " + worldSize + " (expected at least 1)");
    }
    ServerSocket s = new ServerSocket();
    s.bind(new InetSocketAddress(bind, 0));
    return new Rendezvous(s, worldSize, secret, onReport, helloTimeout);
  }

  /**
   * The cap on connections served at once for {@code worldSize} ranks. At most {@code worldSize + 1} are legitimate
   * at a time (every rank's registration, held until all have registered, and rank 0's report channel); twice the
   * world size plus a few leaves as many slots again for a rank's retry after a dropped connection and for
   * strangers, whose slots free up after {@link #HELLO_TIMEOUT}.
   */
  static int maxConnections(int worldSize) {
    return 2 * worldSize + 4;
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
      Socket s;
      try {
        s = server.accept();
      } catch (IOException e) {
        if (!closed) {
          LOG.warn("Rendezvous stopped accepting: {}", e.toString());
        }
        return;
      }
      if (!slots.tryAcquire()) {
        refuse(s);
        continue;
      }
      open.add(s);
      try {
        connections.execute(() -> {
          try {
            serve(s);
          } finally {
            open.remove(s);
            slots.release();
          }
        });
      } catch (RejectedExecutionException e) {
        open.remove(s);
        slots.release();
        closeQuietly(s); // closed meanwhile
      }
    }
  }

  /** Closes a connection beyond the cap; logs the first at once and then a count at most once a second. */
  private void refuse(Socket s) {
    String from = String.valueOf(s.getRemoteSocketAddress());
    closeQuietly(s);
    refusedSinceLog++;
    long now = System.nanoTime();
    if (refusedSinceLog == 1 || now - lastRefusalLog >= REFUSAL_LOG_NANOS) {
      LOG.warn("Refused {} rendezvous connection(s), the latest from {}: {} connections are being served, the cap "
          + "for {} rank(s) (the others authenticate or time out within {})", refusedSinceLog, from, maxConnections,
          worldSize, Duration.ofMillis(helloMillis).toString().substring(2).toLowerCase(java.util.Locale.ROOT));
      refusedSinceLog = 0;
      lastRefusalLog = now;
    }
  }

  private void serve(Socket s) {
    java.net.SocketAddress from = s.getRemoteSocketAddress();
    boolean authenticated = false;
    try (s) {
      s.setTcpNoDelay(true);
      s.setSoTimeout(helloMillis); // until authenticated: a silent stranger gives its slot back
      DataInputStream in = new DataInputStream(s.getInputStream());
      DataOutputStream out = new DataOutputStream(s.getOutputStream());
      byte[] nonce = nonce();
      out.writeInt(MAGIC);
      out.write(nonce);
      out.flush();
      if (in.readInt() != MAGIC) {
        LOG.warn("Rejected a rendezvous connection from {}: not a Stagecraft rendezvous client (unexpected greeting)",
            from);
        return;
      }
      byte kind = in.readByte();
      int rank = in.readInt();
      String payload = in.readUTF();
      byte[] clientNonce = in.readNBytes(32);
      byte[] mac = in.readNBytes(32);
      if (!MessageDigest.isEqual(mac, mac(secret, "client", nonce, new byte[] {kind}, ints(rank), utf8(payload),
          clientNonce))) {
        LOG.warn("Rejected a rendezvous connection from {}: authentication failed (wrong secret, or a replayed hello)",
            from);
        return;
      }
      authenticated = true;
      if (rank < 0 || rank >= worldSize) {
        LOG.warn("Rejected a rendezvous connection from {}: rank {} outside 0..{}", from, rank, worldSize - 1);
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
    } catch (SocketTimeoutException e) {
      if (!authenticated && !closed) {
        LOG.warn("Dropped a rendezvous connection from {}: no complete hello within {} ms", from, helloMillis);
      }
    } catch (java.io.EOFException e) {
      if (!authenticated && !closed) {
        LOG.warn("Dropped a rendezvous connection from {}: it closed before authenticating", from);
      }
    } catch (IOException | InterruptedException | ExecutionException | IllegalArgumentException e) {
      if (!closed) {
        if (authenticated) {
          LOG.debug("Rendezvous connection ended: {}", e.toString());
        } else {
          LOG.warn("Dropped a rendezvous connection from {} before it authenticated: {}", from, e.toString());
        }
      }
    }
  }

  private static void closeQuietly(Socket s) {
    try {
      s.close();
    } catch (IOException e) {
      LOG.debug("Cannot close a rendezvous connection: {}", e.toString());
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
    open.forEach(Rendezvous::closeQuietly); // ends the threads blocked on them
    connections.shutdownNow();
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
      long deadline = System.nanoTime() + timeout.toNanos();
      try (Opened c = open(service, secret, REGISTER, rank, self.toString(), deadline, timeout)) {
        c.socket.setSoTimeout(remainingMillis(deadline));
        String reply;
        try {
          reply = c.in.readUTF();
        } catch (SocketTimeoutException e) {
          throw new IOException("Cannot complete the rendezvous at " + service + ": not every rank registered within "
              + timeout.toSeconds() + "s");
        } catch (java.io.EOFException e) {
          throw new IOException("Cannot complete the rendezvous at " + service + ": it closed the connection (this "
              + "task's secret or rank was refused, or the run ended)");
        }
        byte[] mac = c.in.readNBytes(32);
        if (!MessageDigest.isEqual(mac, mac(secret, "server", c.clientNonce, utf8(reply)))) {
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
      Opened c = open(service, secret, REPORT, rank, "", System.nanoTime() + timeout.toNanos(), timeout);
      try {
        c.socket.setSoTimeout(0);
      } catch (IOException e) {
        c.close();
        throw e;
      }
      return new Reporter(c.socket, c.out);
    }

    /** A connection that has sent its authenticated hello. */
    private record Opened(Socket socket, DataInputStream in, DataOutputStream out, byte[] clientNonce)
        implements AutoCloseable {
      @Override
      public void close() throws IOException {
        socket.close();
      }
    }

    /**
     * Connects and sends the hello. A service that closes the connection before it greets it is at its connection
     * cap (strangers may hold the slots until their hello timeout): tried again, with growing pauses, until the
     * deadline.
     */
    private static Opened open(PeerAddress service, byte[] secret, byte kind, int rank, String payload, long deadline,
        Duration timeout) throws IOException {
      long pause = FIRST_RETRY_MILLIS;
      while (true) {
        Socket s = connect(service, Duration.ofMillis(remainingMillis(deadline)));
        try {
          s.setSoTimeout(remainingMillis(deadline));
          DataInputStream in = new DataInputStream(s.getInputStream());
          DataOutputStream out = new DataOutputStream(s.getOutputStream());
          int magic;
          try {
            magic = in.readInt();
          } catch (java.io.EOFException | java.net.SocketException e) {
            s.close();
            if (remainingMillis(deadline) <= pause) {
              throw new IOException("Cannot reach the rendezvous service at " + service + ": it closed every "
                  + "connection before greeting it for " + timeout.toSeconds() + "s (at its connection cap?)", e);
            }
            sleep(pause);
            pause = Math.min(2 * pause, MAX_RETRY_MILLIS);
            continue;
          }
          if (magic != MAGIC) {
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
          return new Opened(s, in, out, clientNonce);
        } catch (IOException | RuntimeException e) {
          s.close();
          throw e;
        }
      }
    }

    private static int remainingMillis(long deadline) {
      return (int) Math.max(1, Math.min(Integer.MAX_VALUE, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
    }

    private static void sleep(long millis) throws IOException {
      try {
        Thread.sleep(millis); // retry pause
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new java.io.InterruptedIOException("interrupted while waiting to retry the rendezvous");
      }
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
