package dev.stagecraft.training.rendezvous;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.testing.LogCapture;
import dev.stagecraft.training.collective.PeerAddress;
import dev.stagecraft.training.collective.Relay;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;

class RendezvousTest {
  static final InetAddress LOOPBACK = InetAddress.getLoopbackAddress();

  @Test
  void everyRankGetsEveryAddressOnceAllRegistered() throws Exception {
    byte[] secret = Rendezvous.newSecret();
    try (Rendezvous rdv = Rendezvous.start(LOOPBACK, 3, secret, line -> {})) {
      List<CompletableFuture<List<PeerAddress>>> ranks = new ArrayList<>();
      for (int r = 2; r >= 0; r--) {
        int rank = r;
        ranks.add(CompletableFuture.supplyAsync(() -> register(rdv, secret, rank)));
      }
      List<PeerAddress> expected = List.of(new PeerAddress("127.0.0.1", 5000), new PeerAddress("127.0.0.1", 5001),
          new PeerAddress("127.0.0.1", 5002));
      for (CompletableFuture<List<PeerAddress>> f : ranks) {
        assertThat(f.get(10, TimeUnit.SECONDS)).isEqualTo(expected);
      }
      assertThat(rdv.awaitAll(Duration.ofSeconds(1))).isEqualTo(expected);
    }
  }

  @Test
  void aClientWithoutTheSecretIsRejectedAndTakesNoRank() throws Exception {
    byte[] secret = Rendezvous.newSecret();
    try (Rendezvous rdv = Rendezvous.start(LOOPBACK, 2, secret, line -> {})) {
      assertThatThrownBy(() -> Rendezvous.Client.register(rdv.address(), Rendezvous.newSecret(), 0,
          new PeerAddress("10.6.6.6", 666), Duration.ofSeconds(5)))
          .isInstanceOf(IOException.class);
      assertThat(rdv.missing()).containsExactly(0, 1);
      CompletableFuture<List<PeerAddress>> r0 = CompletableFuture.supplyAsync(() -> register(rdv, secret, 0));
      CompletableFuture<List<PeerAddress>> r1 = CompletableFuture.supplyAsync(() -> register(rdv, secret, 1));
      assertThat(r0.get(10, TimeUnit.SECONDS).get(0)).isEqualTo(new PeerAddress("127.0.0.1", 5000));
      assertThat(r1.get(10, TimeUnit.SECONDS)).doesNotContain(new PeerAddress("10.6.6.6", 666));
    }
  }

  @Test
  void waitingNamesTheRanksThatDidNotRegister() throws Exception {
    byte[] secret = Rendezvous.newSecret();
    try (Rendezvous rdv = Rendezvous.start(LOOPBACK, 3, secret, line -> {})) {
      CompletableFuture.runAsync(() -> register(rdv, secret, 1));
      assertThatThrownBy(() -> rdv.awaitAll(Duration.ofMillis(500)))
          .isInstanceOf(TimeoutException.class)
          .hasMessage("Cannot complete the rendezvous: rank(s) [0, 2] did not register within 0s");
    }
  }

  @Test
  void reportsReachTheDriverInOrder() throws Exception {
    byte[] secret = Rendezvous.newSecret();
    List<String> lines = new CopyOnWriteArrayList<>();
    try (Rendezvous rdv = Rendezvous.start(LOOPBACK, 1, secret, lines::add);
        Rendezvous.Reporter reporter = Rendezvous.Client.reporter(rdv.address(), secret, 0, Duration.ofSeconds(5))) {
      reporter.send("epoch 1 step 10 loss 0.5");
      reporter.send("epoch 1 step 20 loss 0.4");
      org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(5)).until(() -> lines.size() == 2);
      assertThat(lines).containsExactly("epoch 1 step 10 loss 0.5", "epoch 1 step 20 loss 0.4");
    }
  }

  @Test
  void silentStrangersBeyondTheCapDoNotKeepTheRanksOutAndThreadsStayBounded() throws Exception {
    byte[] secret = Rendezvous.newSecret();
    int cap = Rendezvous.maxConnections(2);
    List<Socket> strangers = new ArrayList<>();
    try (LogCapture log = new LogCapture(Rendezvous.class);
        Rendezvous rdv = Rendezvous.start(LOOPBACK, 2, secret, line -> {}, Duration.ofMillis(500))) {
      for (int i = 0; i < 3 * cap; i++) {
        Socket s = new Socket();
        strangers.add(s);
        s.connect(new InetSocketAddress(LOOPBACK, rdv.address().port()), 2_000); // and says nothing
      }
      CompletableFuture<List<PeerAddress>> r0 = CompletableFuture.supplyAsync(() -> register(rdv, secret, 0));
      CompletableFuture<List<PeerAddress>> r1 = CompletableFuture.supplyAsync(() -> register(rdv, secret, 1));
      int most = 0;
      while (!(r0.isDone() && r1.isDone())) {
        most = Math.max(most, connectionThreads());
        Thread.sleep(10);
      }
      assertThat(r0.get()).isEqualTo(List.of(new PeerAddress("127.0.0.1", 5000), new PeerAddress("127.0.0.1", 5001)));
      assertThat(r1.get()).isEqualTo(r0.get());
      assertThat(most).as("connection threads at most").isBetween(1, cap);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Refused ")
          && line.contains("rendezvous connection(s), the latest from /127.0.0.1:")
          && line.contains(": " + cap + " connections are being served, the cap for 2 rank(s)"));
      assertThat(log.lines()).anyMatch(line -> line.matches(
          "WARN Dropped a rendezvous connection from /127\\.0\\.0\\.1:\\d+: no complete hello within 500 ms"));
    } finally {
      for (Socket s : strangers) {
        s.close();
      }
    }
  }

  @Test
  void aReplayedHelloAndGarbageAreRefusedAndLogged() throws Exception {
    byte[] secret = Rendezvous.newSecret();
    try (LogCapture log = new LogCapture(Rendezvous.class);
        Rendezvous rdv = Rendezvous.start(LOOPBACK, 2, secret, line -> {})) {
      String self = new PeerAddress("127.0.0.1", 5000).toString();
      int helloBytes = 4 + 1 + 4 + 2 + self.length() + 32 + 32;
      byte[] captured;
      CompletableFuture<List<PeerAddress>> r0;
      // Rank 0's real registration passes a host on the path, which records its hello.
      try (Relay relay = new Relay(rdv.address(), -1, 0, helloBytes)) {
        r0 = CompletableFuture.supplyAsync(() -> register(relay.address(), secret, 0));
        org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(5))
            .until(() -> relay.recorded().length == helloBytes && rdv.missing().equals(List.of(1)));
        captured = relay.recorded();
        try (Socket replay = new Socket(LOOPBACK, rdv.address().port())) {
          replay.setSoTimeout(5_000);
          assertThat(replay.getInputStream().readNBytes(36)).hasSize(36); // a fresh nonce
          replay.getOutputStream().write(captured);
          assertThat(replay.getInputStream().read()).as("closed without an answer").isEqualTo(-1);
        }
        try (Socket garbage = new Socket(LOOPBACK, rdv.address().port())) {
          garbage.setSoTimeout(5_000);
          garbage.getInputStream().readNBytes(36);
          byte[] junk = new byte[512];
          new java.util.Random(7).nextBytes(junk);
          garbage.getOutputStream().write(junk);
          assertThat(garbage.getInputStream().read()).isEqualTo(-1);
        }
        assertThat(rdv.missing()).containsExactly(1);
        CompletableFuture<List<PeerAddress>> r1 = CompletableFuture.supplyAsync(() -> register(rdv, secret, 1));
        assertThat(r1.get(10, TimeUnit.SECONDS)).isEqualTo(r0.get(10, TimeUnit.SECONDS));
      }
      assertThat(log.lines()).anyMatch(line -> line.matches("WARN Rejected a rendezvous connection from "
          + "/127\\.0\\.0\\.1:\\d+: authentication failed \\(wrong secret, or a replayed hello\\)"));
      assertThat(log.lines()).anyMatch(line -> line.matches("WARN Rejected a rendezvous connection from "
          + "/127\\.0\\.0\\.1:\\d+: not a Stagecraft rendezvous client \\(unexpected greeting\\)"));
    }
  }

  private static int connectionThreads() {
    return (int) Thread.getAllStackTraces().keySet().stream()
        .filter(t -> t.isAlive() && t.getName().equals(Rendezvous.CONNECTION_THREAD)).count();
  }

  private static List<PeerAddress> register(PeerAddress service, byte[] secret, int rank) {
    try {
      return Rendezvous.Client.register(service, secret, rank, new PeerAddress("127.0.0.1", 5000 + rank),
          Duration.ofSeconds(10));
    } catch (IOException e) {
      throw new RuntimeException(e);
    }
  }

  private static List<PeerAddress> register(Rendezvous rdv, byte[] secret, int rank) {
    try {
      return Rendezvous.Client.register(rdv.address(), secret, rank, new PeerAddress("127.0.0.1", 5000 + rank),
          Duration.ofSeconds(10));
    } catch (IOException e) {
      throw new RuntimeException(e);
    }
  }
}
