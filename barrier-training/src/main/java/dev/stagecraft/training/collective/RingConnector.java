package dev.stagecraft.training.collective;

import static java.util.Objects.requireNonNull;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sets up a rank's connections to its neighbours, for the ring of a {@link Communicator} or the links of
 * {@link PipeLinks} (the {@link Channel} says which ranks those are): it accepts one from the previous rank (in the
 * calling thread) while it connects to the next rank (in a helper thread; doing one after the other would deadlock,
 * every rank waiting for its neighbour's handshake). Both must be authenticated before the deadline. A pipeline's
 * first and last stage have only one of the two.
 */
final class RingConnector {
  private static final Logger LOG = LoggerFactory.getLogger(RingConnector.class);

  /**
   * Requested SO_SNDBUF/SO_RCVBUF. Enough for the bandwidth-delay product of a fast data-centre link; the OS caps it
   * (Linux: net.core.[rw]mem_max).
   */
  static final int SOCKET_BUFFER_BYTES = 4 << 20;
  /**
   * Longest the acceptor waits for one client's handshake messages (a quarter of the connect timeout, within
   * these bounds), so that a silent stranger cannot hold it until the deadline; a legitimate peer cut off by it (a
   * long GC pause) simply retries.
   */
  static final long HANDSHAKE_MILLIS = 2_000;
  static final long MIN_HANDSHAKE_MILLIS = 1_000;
  private static final long FIRST_RETRY_MILLIS = 20;
  private static final long MAX_RETRY_MILLIS = 500;

  /**
   * A rank's authenticated connections, with the keys their handshakes agreed: from the previous rank (this rank the
   * server) and to the next (this rank the client); null where the channel gives no such neighbour.
   */
  record Neighbours(Socket fromPrevious, Handshake.Session previousSession, Socket toNext,
      Handshake.Session nextSession) {
    void closeQuietly() {
      RingConnector.closeQuietly(fromPrevious, "connection from the previous rank");
      RingConnector.closeQuietly(toNext, "connection to the next rank");
    }
  }

  private final GroupSpec spec;
  private final Handshake handshake;
  /** The ranks this one accepts from and connects to; -1: none. */
  private final int previous;
  private final int next;
  private final long deadline;
  private final String self;
  private final long handshakeMillis;

  private RingConnector(GroupSpec spec, byte[] secret, FrameIntegrity integrity, Channel channel) {
    this.spec = spec;
    this.previous = channel.previous(spec);
    this.next = channel.next(spec);
    this.handshake = new Handshake(spec, secret, integrity, channel);
    this.deadline = System.nanoTime() + spec.connectTimeout().toNanos();
    this.self = "rank " + spec.rank() + " of " + spec.worldSize() + " in group '" + spec.groupId() + "'";
    this.handshakeMillis =
        Math.min(HANDSHAKE_MILLIS, Math.max(MIN_HANDSHAKE_MILLIS, spec.connectTimeout().toMillis() / 4));
  }

  static ServerSocket listen(InetAddress bindAddress) throws IOException {
    requireNonNull(bindAddress, "bindAddress is null");
    // Opened through NIO: the communicator moves data through the accepted sockets' channels.
    ServerSocket server = ServerSocketChannel.open().socket();
    try {
      server.setReceiveBufferSize(SOCKET_BUFFER_BYTES); // before bind, so accepted sockets get window scaling
      server.bind(new InetSocketAddress(bindAddress, 0), 16);
      return server;
    } catch (IOException | RuntimeException e) {
      closeQuietly(server, "listening socket");
      throw e;
    }
  }

  static Communicator connect(ServerSocket server, GroupSpec spec, byte[] secret, FrameIntegrity integrity) {
    Neighbours ring = connectNeighbours(server, spec, secret, integrity, Channel.RING);
    if (ring.fromPrevious() == null) {
      return RingCommunicator.alone(spec);
    }
    try {
      return new RingCommunicator(spec, ring.fromPrevious(), ring.previousSession(), ring.toNext(),
          ring.nextSession());
    } catch (IOException | RuntimeException e) {
      ring.closeQuietly();
      throw new CollectiveException("Cannot connect rank " + spec.rank() + " of " + spec.worldSize() + " in group '"
          + spec.groupId() + "': " + e.getMessage(), List.of(), e);
    }
  }

  /**
   * Checks the arguments, then connects {@code spec.rank()} to the neighbours {@code channel} gives it and
   * authenticates them, or throws naming the rank that is missing or refused. Takes over {@code server} and closes
   * it before it returns or throws.
   */
  static Neighbours connectNeighbours(ServerSocket server, GroupSpec spec, byte[] secret, FrameIntegrity integrity,
      Channel channel) {
    try {
      checkArguments(server, spec, secret, integrity);
      RingConnector connector = new RingConnector(spec, secret, integrity, channel);
      if (connector.previous < 0 && connector.next < 0) {
        return new Neighbours(null, null, null, null);
      }
      return connector.connectBoth(server);
    } finally {
      if (server != null) {
        closeQuietly(server, "listening socket");
      }
    }
  }

  private static void checkArguments(ServerSocket server, GroupSpec spec, byte[] secret, FrameIntegrity integrity) {
    requireNonNull(server, "server is null");
    requireNonNull(spec, "spec is null");
    requireNonNull(secret, "secret is null");
    requireNonNull(integrity, "integrity is null");
    if (secret.length < Communicator.MIN_SECRET_BYTES) {
      throw new IllegalArgumentException("Invalid secret for group '" + spec.groupId() + "': " + secret.length
          + " bytes (expected at least " + Communicator.MIN_SECRET_BYTES + ")");
    }
    if (server.getChannel() == null) {
      throw new IllegalArgumentException("Cannot connect rank " + spec.rank()
          + ": its server socket was not opened by Communicator.listen (expected one with a channel)");
    }
    if (!server.isBound() || server.isClosed()) {
      throw new IllegalArgumentException("Cannot connect rank " + spec.rank() + ": its server socket is "
          + (server.isClosed() ? "closed" : "not bound") + " (expected one bound to "
          + spec.peers().get(spec.rank()) + ")");
    }
    int advertised = spec.peers().get(spec.rank()).port();
    if (server.getLocalPort() != advertised) {
      throw new IllegalArgumentException("Cannot connect rank " + spec.rank() + ": its server socket listens on port "
          + server.getLocalPort() + " but the peers list gives " + spec.peers().get(spec.rank()) + " for rank "
          + spec.rank());
    }
  }

  private Neighbours connectBoth(ServerSocket server) {
    long started = System.nanoTime();
    Handshake.Session[] incoming = new Handshake.Session[1];
    Outgoing outgoing = new Outgoing();
    Thread connector = null;
    if (next >= 0) {
      connector = new Thread(outgoing, "stagecraft-collective-" + spec.groupId() + "-r" + spec.rank() + "-connect");
      connector.setDaemon(true);
      connector.start();
    }
    Socket in = null;
    CollectiveException acceptFailure = null;
    try {
      in = previous >= 0 ? acceptFromPrevious(server, incoming) : null;
    } catch (CollectiveTimeoutException e) {
      acceptFailure = e; // at the deadline: the connector ends now too, and may have its own rank to name
    } catch (CollectiveException e) {
      acceptFailure = e;
      outgoing.cancel(); // no point finishing the other half
    }
    if (connector != null) {
      joinUntilDeadline(connector, outgoing);
    }
    Socket out = outgoing.socket;
    CollectiveException connectFailure = outgoing.failure;
    if (acceptFailure != null || connectFailure != null) {
      closeQuietly(in, "connection from rank " + previous);
      closeQuietly(out, "connection to rank " + next);
      throw combine(acceptFailure, connectFailure);
    }
    LOG.info("Connected {}:{}{} in {} ms", self,
        in == null ? "" : " from rank " + previous + " (" + in.getRemoteSocketAddress() + ")",
        out == null ? "" : (in == null ? "" : ",") + " to rank " + next + " (" + spec.peers().get(next) + ")",
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started));
    return new Neighbours(in, incoming[0], out, outgoing.session);
  }

  /** Accepts until the previous rank has authenticated; strangers and wrong ranks are dropped and logged. */
  private Socket acceptFromPrevious(ServerSocket server, Handshake.Session[] session) {
    int rejected = 0;
    while (true) {
      long remaining = remainingMillis();
      if (remaining <= 0) {
        throw new CollectiveTimeoutException("Cannot connect " + self + ": no authenticated connection from rank "
            + previous + " within " + Durations.format(spec.connectTimeout())
            + (rejected > 0 ? " (rejected " + rejected + " other connection(s))" : ""), List.of(previous));
      }
      Socket socket;
      try {
        server.setSoTimeout((int) remaining);
        socket = server.accept();
      } catch (SocketTimeoutException e) {
        continue; // the loop reports the timeout
      } catch (IOException e) {
        throw new CollectiveException("Cannot connect " + self + ": accepting a connection from rank " + previous
            + " failed: " + e.getMessage(), List.of(previous), e);
      }
      try {
        configure(socket);
        socket.setSoTimeout((int) Math.max(1, Math.min(remainingMillis(), handshakeMillis)));
        session[0] = handshake.acceptFrom(socket, previous);
        return socket;
      } catch (Handshake.Rejected e) {
        rejected++;
        LOG.warn("Rejected connection from {} to {}: {}", socket.getRemoteSocketAddress(), self, e.getMessage());
        closeQuietly(socket, "rejected connection");
      } catch (IOException e) {
        rejected++;
        LOG.warn("Dropped connection from {} to {} during the handshake: {}", socket.getRemoteSocketAddress(), self,
            describe(e));
        closeQuietly(socket, "dropped connection");
      }
    }
  }

  /** Connects to the next rank, retrying until it authenticates or the deadline passes. */
  private final class Outgoing implements Runnable {
    private volatile boolean cancelled;
    private volatile Socket attempt;
    volatile Socket socket;
    volatile Handshake.Session session;
    volatile CollectiveException failure;

    @Override
    public void run() {
      PeerAddress address = spec.peers().get(next);
      String lastError = "no attempt";
      String rejection = null; // an authentication failure says more than a later timeout
      long backoff = FIRST_RETRY_MILLIS;
      try {
        while (!cancelled) {
          long remaining = remainingMillis();
          if (remaining <= 0) {
            break;
          }
          Socket s;
          try {
            s = SocketChannel.open().socket();
          } catch (IOException e) {
            failure = new CollectiveException("Cannot connect " + self + " to rank " + next + " at " + address
                + ": cannot open a socket: " + describe(e), List.of(next), e);
            return;
          }
          attempt = s;
          try {
            configure(s);
            s.connect(address.resolve(), (int) remaining);
            // Not capped like the acceptor's: the peer may start accepting late, and giving up early would leave
            // a stale connection in its backlog that it would then report as a dropped stranger.
            s.setSoTimeout((int) Math.max(1, remainingMillis()));
            Handshake.Session agreed = handshake.connectTo(s, next);
            if (cancelled) {
              closeQuietly(s, "connection to rank " + next);
              break;
            }
            session = agreed;
            socket = s;
            return;
          } catch (Handshake.Rejected e) {
            rejection = "rank " + next + " at " + address + " " + e.getMessage();
            LOG.warn("Cannot connect {} to rank {} at {}: {}", self, next, address, e.getMessage());
          } catch (IOException e) {
            lastError = describe(e);
            LOG.debug("Cannot connect {} to rank {} at {} yet: {}", self, next, address, lastError);
          }
          closeQuietly(s, "connection attempt to rank " + next);
          sleepQuietly(Math.min(backoff, remainingMillis()));
          backoff = Math.min(backoff * 2, MAX_RETRY_MILLIS);
        }
        if (cancelled) {
          return;
        }
        failure = rejection != null
            ? new CollectiveException("Cannot connect " + self + ": " + rejection, List.of(next))
            : new CollectiveTimeoutException("Cannot connect " + self + ": rank " + next + " at " + address
                + " did not complete an authenticated connection within " + Durations.format(spec.connectTimeout())
                + " (last error: " + lastError + ")", List.of(next));
      } catch (RuntimeException e) {
        failure = new CollectiveException("Cannot connect " + self + " to rank " + next + " at " + address + ": "
            + describe(e), List.of(next), e);
      }
    }

    void cancel() {
      cancelled = true;
      closeQuietly(attempt, "connection attempt to rank " + next);
    }
  }

  private void joinUntilDeadline(Thread connector, Outgoing outgoing) {
    try {
      connector.join(Math.max(1, remainingMillis() + handshakeMillis));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (connector.isAlive()) {
      outgoing.cancel();
      try {
        connector.join(1_000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      if (outgoing.failure == null && outgoing.socket == null) {
        outgoing.failure = new CollectiveTimeoutException("Cannot connect " + self + ": rank " + next + " at "
            + spec.peers().get(next) + " did not answer within " + Durations.format(spec.connectTimeout()),
            List.of(next));
      }
    }
  }

  private CollectiveException combine(CollectiveException accept, CollectiveException connect) {
    if (accept == null || connect == null) {
      return accept != null ? accept : connect;
    }
    List<Integer> ranks = new ArrayList<>(accept.ranks());
    connect.ranks().stream().filter(r -> !ranks.contains(r)).forEach(ranks::add);
    String prefix = "Cannot connect " + self + ": ";
    String other = connect.getMessage();
    String message = accept.getMessage() + "; and "
        + (other.startsWith(prefix) ? other.substring(prefix.length()) : other);
    CollectiveException combined = accept instanceof CollectiveTimeoutException
            && connect instanceof CollectiveTimeoutException
        ? new CollectiveTimeoutException(message, ranks)
        : new CollectiveException(message, ranks);
    combined.addSuppressed(connect);
    return combined;
  }

  private long remainingMillis() {
    return TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
  }

  static void configure(Socket socket) throws IOException {
    socket.setTcpNoDelay(true);
    socket.setKeepAlive(true);
    socket.setSendBufferSize(SOCKET_BUFFER_BYTES);
    socket.setReceiveBufferSize(SOCKET_BUFFER_BYTES);
  }

  private static void sleepQuietly(long millis) {
    if (millis <= 0) {
      return;
    }
    try {
      Thread.sleep(millis); // retry backoff
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  static String describe(Throwable e) {
    return e.getMessage() == null ? e.getClass().getSimpleName() : e.getClass().getSimpleName() + ": " + e.getMessage();
  }

  static void closeQuietly(AutoCloseable closeable, String what) {
    if (closeable == null) {
      return;
    }
    try {
      closeable.close();
    } catch (Exception e) {
      LOG.warn("Cannot close {}: {}", what, describe(e));
    }
  }
}
