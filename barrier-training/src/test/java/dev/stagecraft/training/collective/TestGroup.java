package dev.stagecraft.training.collective;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * n ranks in this JVM: one listening socket each on loopback, connected from threads of a pool it owns, as a ring of
 * {@link Communicator}s or as the stages of a pipeline ({@link PipeLinks}).
 */
final class TestGroup implements AutoCloseable {
  static final byte[] SECRET = "stagecraft-test-secret-0123456789".getBytes(UTF_8);
  static final InetAddress LOOPBACK = InetAddress.getLoopbackAddress();
  /** How long a test waits for a rank's work before it calls the rank hung. */
  static final long WAIT_SECONDS = 20;
  private static final AtomicInteger GROUPS = new AtomicInteger();

  final String groupId = "test-" + GROUPS.incrementAndGet();
  final int size;
  final Duration connectTimeout;
  final Duration operationTimeout;
  final FrameIntegrity integrity;
  final List<ServerSocket> servers = new ArrayList<>();
  final List<PeerAddress> peers = new ArrayList<>();
  private final Communicator[] communicators;
  private final PipeLinks[] stages;
  private final ExecutorService pool = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "test-rank");
    t.setDaemon(true);
    return t;
  });

  private TestGroup(int size, Duration connectTimeout, Duration operationTimeout) throws IOException {
    this(size, connectTimeout, operationTimeout, FrameIntegrity.DEFAULT);
  }

  private TestGroup(int size, Duration connectTimeout, Duration operationTimeout, FrameIntegrity integrity)
      throws IOException {
    this.integrity = integrity;
    this.size = size;
    this.connectTimeout = connectTimeout;
    this.operationTimeout = operationTimeout;
    this.communicators = new Communicator[size];
    this.stages = new PipeLinks[size];
    for (int r = 0; r < size; r++) {
      ServerSocket server = Communicator.listen(LOOPBACK);
      servers.add(server);
      peers.add(new PeerAddress(LOOPBACK.getHostAddress(), server.getLocalPort()));
    }
  }

  static TestGroup bind(int size, Duration timeout) throws IOException {
    return new TestGroup(size, timeout, timeout);
  }

  static TestGroup bind(int size, Duration connectTimeout, Duration operationTimeout) throws IOException {
    return new TestGroup(size, connectTimeout, operationTimeout);
  }

  /** Binds ranks whose frames are protected as {@code integrity} says. */
  static TestGroup bind(int size, Duration timeout, FrameIntegrity integrity) throws IOException {
    return new TestGroup(size, timeout, timeout, integrity);
  }

  /** Binds and connects all ranks, their frames protected as {@code integrity} says. */
  static TestGroup connected(int size, Duration timeout, FrameIntegrity integrity) throws Exception {
    TestGroup group = new TestGroup(size, timeout, timeout, integrity);
    try {
      group.connectAll();
      return group;
    } catch (Exception | Error e) {
      group.close();
      throw e;
    }
  }

  /** Binds and connects all ranks. */
  static TestGroup connected(int size, Duration timeout) throws Exception {
    return connected(size, timeout, timeout);
  }

  /** Binds and connects all ranks. */
  static TestGroup connected(int size, Duration connectTimeout, Duration operationTimeout) throws Exception {
    TestGroup group = new TestGroup(size, connectTimeout, operationTimeout);
    try {
      group.connectAll();
      return group;
    } catch (Exception | Error e) {
      group.close();
      throw e;
    }
  }

  GroupSpec spec(int rank) {
    return new GroupSpec(groupId, rank, peers, connectTimeout, operationTimeout);
  }

  Future<Communicator> connectAsync(int rank) {
    return connectAsync(rank, operationTimeout);
  }

  /** Connects {@code rank} with its own operation timeout. */
  Future<Communicator> connectAsync(int rank, Duration operationTimeout) {
    return connectAsync(rank, peers, operationTimeout);
  }

  /** Connects {@code rank} with its own view of where the ranks listen (e.g. a relay in place of one). */
  Future<Communicator> connectAsync(int rank, List<PeerAddress> peers, Duration operationTimeout) {
    GroupSpec spec = new GroupSpec(groupId, rank, peers, connectTimeout, operationTimeout);
    return submit(() -> {
      Communicator c = Communicator.connect(servers.get(rank), spec, SECRET, integrity);
      communicators[rank] = c;
      return c;
    });
  }

  /** Connects {@code rank} as a pipeline stage. */
  Future<PipeLinks> connectStageAsync(int rank) {
    return connectStageAsync(rank, peers, PipeLinks.MAX_QUEUED_BYTES);
  }

  /** Connects {@code rank} as a pipeline stage with its own view of the peers and its own queue limit. */
  Future<PipeLinks> connectStageAsync(int rank, List<PeerAddress> peers, long maxQueuedBytes) {
    GroupSpec spec = new GroupSpec(groupId, rank, peers, connectTimeout, operationTimeout);
    return submit(() -> {
      PipeLinks p = TcpPipeLinks.connect(servers.get(rank), spec, SECRET, integrity, maxQueuedBytes);
      stages[rank] = p;
      return p;
    });
  }

  /** Connects every rank as a stage of one pipeline. */
  List<PipeLinks> connectPipeline() throws Exception {
    List<Future<PipeLinks>> futures = new ArrayList<>();
    for (int r = 0; r < size; r++) {
      futures.add(connectStageAsync(r));
    }
    List<PipeLinks> result = new ArrayList<>();
    for (Future<PipeLinks> f : futures) {
      result.add(get(f));
    }
    return result;
  }

  PipeLinks stage(int r) {
    return stages[r];
  }

  List<Communicator> connectAll() throws Exception {
    List<Future<Communicator>> futures = new ArrayList<>();
    for (int r = 0; r < size; r++) {
      futures.add(connectAsync(r));
    }
    List<Communicator> result = new ArrayList<>();
    for (Future<Communicator> f : futures) {
      result.add(get(f));
    }
    return result;
  }

  Communicator rank(int r) {
    return communicators[r];
  }

  <T> Future<T> submit(Callable<T> task) {
    return pool.submit(task);
  }

  @FunctionalInterface
  interface RankTask<T> {
    T run(Communicator c) throws Exception;
  }

  /** Runs {@code task} on every rank concurrently and returns the results, index = rank. */
  <T> List<T> onEachRank(RankTask<T> task) throws Exception {
    List<Future<T>> futures = new ArrayList<>();
    for (int r = 0; r < size; r++) {
      Communicator c = communicators[r];
      futures.add(submit(() -> task.run(c)));
    }
    List<T> results = new ArrayList<>();
    for (Future<T> f : futures) {
      results.add(get(f));
    }
    return results;
  }

  /**
   * Connects rank 0 (rank 1 is already connecting, as {@code rank1}) and checks that an all-reduce of the two gives
   * the right sums: whatever a test threw at the group before (strangers, forgeries) changed nothing.
   */
  void assertTwoRanksConnectAndSumCorrectly(Future<Communicator> rank1) throws Exception {
    Future<Communicator> rank0 = connectAsync(0);
    get(rank0);
    get(rank1);
    List<float[]> results = onEachRank(c -> {
      float[] data = {c.rank() + 1, 10, 100, 1000};
      c.allReduceSum(data);
      return data;
    });
    org.assertj.core.api.Assertions.assertThat(results)
        .allSatisfy(data -> org.assertj.core.api.Assertions.assertThat(data).containsExactly(3, 20, 200, 2000));
  }

  /** The future's value; its failure unwrapped; an AssertionError if it takes longer than {@link #WAIT_SECONDS}. */
  static <T> T get(Future<T> future) throws Exception {
    try {
      return future.get(WAIT_SECONDS, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof Exception cause) {
        throw cause;
      }
      throw e;
    } catch (TimeoutException e) {
      future.cancel(true);
      throw new AssertionError("a rank hung for more than " + WAIT_SECONDS + " s");
    }
  }

  /** What the future failed with; an AssertionError if it succeeded or hung. */
  static Throwable failureOf(Future<?> future) throws InterruptedException {
    try {
      future.get(WAIT_SECONDS, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      return e.getCause();
    } catch (TimeoutException e) {
      future.cancel(true);
      throw new AssertionError("a rank hung for more than " + WAIT_SECONDS + " s instead of failing");
    }
    throw new AssertionError("expected the rank to fail, but it succeeded");
  }

  @Override
  public void close() throws InterruptedException {
    for (Communicator c : communicators) {
      if (c != null) {
        c.close();
      }
    }
    for (PipeLinks p : stages) {
      if (p != null) {
        p.close();
      }
    }
    for (ServerSocket s : servers) {
      try {
        s.close();
      } catch (IOException e) {
        // test cleanup
      }
    }
    pool.shutdownNow();
    if (!pool.awaitTermination(5, TimeUnit.SECONDS)) {
      throw new AssertionError("test rank threads did not stop");
    }
  }
}
