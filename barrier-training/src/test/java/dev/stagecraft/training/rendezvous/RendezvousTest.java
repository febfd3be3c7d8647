package dev.stagecraft.training.rendezvous;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.training.collective.PeerAddress;
import java.io.IOException;
import java.net.InetAddress;
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

  private static List<PeerAddress> register(Rendezvous rdv, byte[] secret, int rank) {
    try {
      return Rendezvous.Client.register(rdv.address(), secret, rank, new PeerAddress("127.0.0.1", 5000 + rank),
          Duration.ofSeconds(10));
    } catch (IOException e) {
      throw new RuntimeException(e);
    }
  }
}
