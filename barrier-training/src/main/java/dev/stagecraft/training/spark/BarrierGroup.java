package dev.stagecraft.training.spark;

import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.collective.FrameIntegrity;
import dev.stagecraft.training.collective.GroupSpec;
import dev.stagecraft.training.collective.PeerAddress;
import dev.stagecraft.training.collective.Subgroups;
import dev.stagecraft.training.rendezvous.Rendezvous;
import java.io.Serializable;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.function.Consumer;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.SparkEnv;
import org.apache.spark.api.java.JavaRDD;

/**
 * Runs work in one Spark barrier stage, one task per partition, each task holding a {@link Communicator} connected
 * to all the others: the driver starts a {@link Rendezvous} for the stage, every task opens a listening socket,
 * registers its address, learns its peers' and connects its ring. Rank 0 also gets a channel for progress reports,
 * delivered to {@code onReport} on the driver. The per-run secret authenticates every connection and keys the
 * protection of the ring's frames ({@link FrameIntegrity}). It travels to the tasks inside Spark's serialized task:
 * see {@link SecretTransport} for the Spark settings that protect it on the way.
 */
public final class BarrierGroup {
  private BarrierGroup() {}

  /** What each task does once connected. */
  @FunctionalInterface
  public interface Work<T, R> extends Serializable {
    /**
     * @param comm the ring of all ranks
     * @param subgroups smaller groups among the ranks, over the same secret (a pipeline's stage rings and links)
     * @param reporter rank 0's progress channel to the driver; null on other ranks
     */
    R run(Communicator comm, Subgroups subgroups, Iterator<T> rows, Rendezvous.Reporter reporter) throws Exception;
  }

  /**
   * Runs {@code work} on every partition of {@code rdd} at once and returns each rank's result, index = rank.
   *
   * @param groupId names the group in the handshake (unique per stage attempt)
   * @param timeout bound on the rendezvous and every collective wait
   */
  public static <T, R> List<R> run(JavaRDD<T> rdd, String groupId, Duration timeout, Consumer<String> onReport,
      Work<T, R> work) throws Exception {
    return run(rdd, groupId, timeout, FrameIntegrity.DEFAULT, onReport, work);
  }

  /**
   * As {@link #run(JavaRDD, String, Duration, Consumer, Work)}, the ring's frames protected as {@code integrity}
   * says.
   */
  public static <T, R> List<R> run(JavaRDD<T> rdd, String groupId, Duration timeout, FrameIntegrity integrity,
      Consumer<String> onReport, Work<T, R> work) throws Exception {
    int n = rdd.getNumPartitions();
    byte[] secret = Rendezvous.newSecret();
    String driverHost = rdd.context().getConf().get("spark.driver.host",
        InetAddress.getLocalHost().getHostAddress());
    try (Rendezvous rdv = Rendezvous.start(InetAddress.getByName(driverHost), n, secret, onReport)) {
      String service = new PeerAddress(driverHost, rdv.address().port()).toString();
      List<Ranked<R>> results;
      try (TaskFailures failures = TaskFailures.watch(rdd.context())) {
        try {
          results = BarrierStage.collect(rdd, new Task<>(groupId, service, secret, timeout, integrity, work));
        } catch (Exception e) { // Scala throws SparkException, a checked exception Java cannot name here
          throw e instanceof org.apache.spark.SparkException ? failures.explain(e) : e;
        }
      }
      @SuppressWarnings("unchecked")
      R[] byRank = (R[]) new Object[n];
      results.forEach(r -> byRank[r.rank()] = r.value());
      return java.util.Arrays.asList(byRank);
    }
  }

  private record Ranked<R>(int rank, R value) implements Serializable {}

  private static final class Task<T, R> implements BarrierStage.PartitionFunction<T, Ranked<R>> {
    private static final long serialVersionUID = 1L;
    private final String groupId;
    private final String service; // host:port (PeerAddress is not Serializable)
    private final byte[] secret;
    private final Duration timeout;
    private final FrameIntegrity integrity;
    private final Work<T, R> work;

    Task(String groupId, String service, byte[] secret, Duration timeout, FrameIntegrity integrity,
        Work<T, R> work) {
      this.groupId = groupId;
      this.service = service;
      this.secret = secret.clone();
      this.timeout = timeout;
      this.integrity = integrity;
      this.work = work;
    }

    @Override
    public Iterator<Ranked<R>> apply(Iterator<T> rows) throws Exception {
      int rank = BarrierTaskContext.get().partitionId();
      String host = SparkEnv.get().blockManager().blockManagerId().host();
      PeerAddress driver = PeerAddress.parse(service);
      try (ServerSocket server = Communicator.listen(InetAddress.getByName(host))) {
        PeerAddress self = new PeerAddress(host, server.getLocalPort());
        List<PeerAddress> peers = Rendezvous.Client.register(driver, secret, rank, self, timeout);
        try (Communicator comm =
                Communicator.connect(server, new GroupSpec(groupId, rank, peers, timeout), secret, integrity);
            Rendezvous.Reporter reporter = rank == 0 ? Rendezvous.Client.reporter(driver, secret, 0, timeout) : null) {
          Subgroups subgroups = new Subgroups(comm, groupId, InetAddress.getByName(host), secret, timeout, integrity);
          return List.of(new Ranked<>(rank, work.run(comm, subgroups, rows, reporter))).iterator();
        }
      }
    }
  }
}
