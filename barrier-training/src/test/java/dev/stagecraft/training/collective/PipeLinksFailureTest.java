package dev.stagecraft.training.collective;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;
import static org.awaitility.Awaitility.await;

import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Pipeline links that fail: timeouts, neighbours that close or die, messages out of sync, frames altered on the way.
 * Every failure names the rank (and its address) it is attributed to, the stages further away learn the cause, and
 * nothing waits longer than the operation timeout.
 */
@Timeout(120)
class PipeLinksFailureTest {
  private static final Duration LONG = Duration.ofSeconds(10);
  private static final Duration SHORT = Duration.ofMillis(400);

  @Test
  void aReceiveTimesOutNamingTheSilentRankAndItsAddressThenFailsFast() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG, SHORT)) {
      group.connectPipeline();
      String silent = "rank 0 (" + group.peers.get(0) + ")";
      Throwable failure = catchThrowable(() -> group.stage(1).receivePrevious(7, new float[4], 4));
      assertThat(failure).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot complete receivePrevious(tag 7): no data from " + silent + " within 400ms");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(0);
      assertThatThrownBy(() -> group.stage(1).sendPrevious(8, new float[1], 1))
          .isInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot run sendPrevious(tag 8): the pipeline links of rank 1 of 2 in group '" + group.groupId
              + "' failed earlier: no data from " + silent + " within 400ms");
      // The silent stage learns why its neighbour gave up.
      assertThat(catchThrowable(() -> group.stage(0).receiveNext(9, new float[1], 1)))
          .isInstanceOf(CollectiveTimeoutException.class)
          .hasMessageEndingWith(": rank 1 reported: no data from " + silent + " within 400ms");
    }
  }

  @Test
  void aSendTimesOutNamingTheReceiverWhenItsQueueStaysFull() throws Exception {
    int length = 16 << 20;
    try (TestGroup group = TestGroup.bind(2, LONG, SHORT)) {
      PipeLinksTest.connectWithQueueLimit(group, Wire.CHUNK_BYTES);
      Throwable failure = catchThrowable(() -> group.stage(0).sendNext(1, new float[length], length));
      assertThat(failure).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot complete sendNext(tag 1): rank 1 (" + group.peers.get(1) + ") did not take data within "
              + "400ms (it stopped reading, or holds 1 MiB from this rank that its receive calls have not taken)");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(1);
    }
  }

  @Test
  void aNeighbourThatClosesFailsTheWaitingReceiveNamingItAfterItsLastData() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      group.connectPipeline();
      float[] first = new float[2];
      Future<Object> receiving = group.submit(() -> {
        group.stage(0).receiveNext(1, first, 2);
        group.stage(0).receiveNext(2, new float[2], 2); // never sent
        return null;
      });
      group.stage(1).sendPrevious(1, new float[] {4, 5}, 2);
      group.stage(1).close();
      long closed = System.nanoTime();
      Throwable failure = TestGroup.failureOf(receiving);
      assertThat(first).as("the data sent before closing arrives").containsExactly(4, 5);
      assertThat(failure).isInstanceOf(CollectiveException.class).isNotInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot complete receiveNext(tag 2): rank 1 (" + group.peers.get(1) + ") closed its pipeline "
              + "links");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(1);
      assertThat(Duration.ofNanos(System.nanoTime() - closed)).isLessThan(LONG.dividedBy(2));
      assertThatThrownBy(() -> group.stage(1).sendPrevious(3, new float[1], 1))
          .isInstanceOf(IllegalStateException.class)
          .hasMessage("Cannot run sendPrevious(tag 3): the pipeline links of rank 1 of 2 in group '" + group.groupId
              + "' are closed");
    }
  }

  @Test
  void stagesFurtherAwayLearnWhyTheirNeighbourFailed() throws Exception {
    try (TestGroup group = TestGroup.bind(3, LONG)) {
      group.connectPipeline();
      Future<Object> waitingAtStage0 = group.submit(() -> {
        group.stage(0).receiveNext(1, new float[1], 1);
        return null;
      });
      group.stage(2).close();
      String last = "rank 2 (" + group.peers.get(2) + ")";
      assertThatThrownBy(() -> group.stage(1).receiveNext(1, new float[1], 1)).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete receiveNext(tag 1): " + last + " closed its pipeline links");
      Throwable atStage0 = TestGroup.failureOf(waitingAtStage0);
      assertThat(atStage0).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete receiveNext(tag 1): rank 1 reported: " + last + " closed its pipeline links");
      assertThat(((CollectiveException) atStage0).ranks()).containsExactly(2);
    }
  }

  @Test
  void aNeighbourThatDiesIsNamedWithoutWaitingForTheTimeout() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      Future<PipeLinks> connecting = group.connectStageAsync(0);
      // Stage 1 played by hand: it authenticates as a real one would, then its process "dies".
      Handshake stage1 = new Handshake(group.groupId, 2, 1, TestGroup.SECRET, group.integrity, Channel.PIPELINE);
      ServerSocket server = group.servers.get(1);
      server.setSoTimeout(5_000);
      Future<Object> receiving;
      try (Socket socket = server.accept()) {
        socket.setSoTimeout(5_000);
        stage1.acceptFrom(socket, 0);
        PipeLinks stage0 = TestGroup.get(connecting);
        receiving = group.submit(() -> {
          stage0.receiveNext(1, new float[1], 1);
          return null;
        });
        assertThatThrownBy(() -> receiving.get(200, TimeUnit.MILLISECONDS)).isInstanceOf(TimeoutException.class);
      }
      long died = System.nanoTime();
      Throwable failure = TestGroup.failureOf(receiving);
      assertThat(failure).isInstanceOf(CollectiveException.class).isNotInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot complete receiveNext(tag 1): rank 1 (" + group.peers.get(1) + ") closed its connection");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(1);
      assertThat(Duration.ofNanos(System.nanoTime() - died)).isLessThan(LONG.dividedBy(2));
    }
  }

  @Test
  void aMessageWithAnotherTagOrLengthIsReportedOutOfSyncNamingBoth() throws Exception {
    assertOutOfSync(4, 10, "received tag 3 with 10 floats while this rank expects tag 4 with 10 floats");
    assertOutOfSync(3, 11, "received tag 3 with 10 floats while this rank expects tag 3 with 11 floats");
  }

  /** Stage 0 sends tag 3 with 10 floats; stage 1 expects {@code tag} with {@code length}. */
  private static void assertOutOfSync(int tag, int length, String what) throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      group.connectPipeline();
      group.stage(0).sendNext(3, new float[10], 10);
      String expected = "out of sync with rank 0 (" + group.peers.get(0) + "): " + what;
      Throwable failure = catchThrowable(() -> group.stage(1).receivePrevious(tag, new float[length], length));
      assertThat(failure).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete receivePrevious(tag " + tag + "): " + expected);
      assertThat(((CollectiveException) failure).ranks()).containsExactly(0);
      assertThat(catchThrowable(() -> group.stage(0).receiveNext(1, new float[1], 1)))
          .isInstanceOf(CollectiveException.class).hasMessageEndingWith(": rank 1 reported: " + expected);
    }
  }

  @Test
  void closingFromAnotherThreadAbortsABlockedReceiveAndStopsTheReaders() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      group.connectPipeline();
      Future<Object> blocked = group.submit(() -> {
        group.stage(0).receiveNext(1, new float[1], 1);
        return null;
      });
      assertThatThrownBy(() -> blocked.get(200, TimeUnit.MILLISECONDS)).isInstanceOf(TimeoutException.class);
      group.stage(0).close();
      group.stage(0).close();
      Throwable failure = TestGroup.failureOf(blocked);
      assertThat(failure).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete receiveNext(tag 1): the pipeline links of rank 0 were closed");
      assertThat(((CollectiveException) failure).ranks()).isEmpty();
      assertThat(threadsNamed("stagecraft-pipeline-" + group.groupId + "-r0-")).isEmpty();
      assertThatThrownBy(() -> group.stage(1).receivePrevious(1, new float[1], 1))
          .isInstanceOf(CollectiveException.class).hasMessageEndingWith(": rank 0 (" + group.peers.get(0)
              + ") closed its pipeline links");
      group.stage(1).close();
      await().atMost(Duration.ofSeconds(5))
          .until(() -> threadsNamed("stagecraft-pipeline-" + group.groupId + "-").isEmpty());
    }
  }

  @Test
  void interruptingABlockedReceiveFailsItAtOnceAndTellsTheNeighbour() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      group.connectPipeline();
      AtomicReference<Throwable> thrown = new AtomicReference<>();
      Thread receiver = new Thread(() -> {
        try {
          group.stage(0).receiveNext(1, new float[1], 1); // stage 1 never sends
        } catch (Throwable t) {
          thrown.set(t);
        }
      }, "interrupted-stage-0");
      receiver.start();
      await().atMost(Duration.ofSeconds(5)).until(() -> receiver.getState() == Thread.State.TIMED_WAITING);
      receiver.interrupt();
      receiver.join(LONG.toMillis() / 2);
      assertThat(receiver.isAlive()).as("the interrupted receive returned").isFalse();
      assertThat(thrown.get()).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete receiveNext(tag 1): interrupted while receiving from rank 1");
      assertThat(catchThrowable(() -> group.stage(1).receivePrevious(1, new float[1], 1)))
          .isInstanceOf(CollectiveException.class)
          .hasMessageEndingWith(": rank 0 reported: interrupted while receiving from rank 1");
    }
  }

  // ---- integrity -----------------------------------------------------------------------------------------------

  @ParameterizedTest
  @EnumSource(value = FrameIntegrity.class, names = {"MAC", "ENCRYPT"})
  void aByteFlippedOnTheWayFailsTheReceiveNamingTheSender(FrameIntegrity mode) throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG, mode); Relay relay = IntegrityTest.relayInFrontOfRank1(group)) {
      List<PipeLinks> stages = connectThroughRelay(group, relay);
      stages.get(0).sendNext(1, ones(), 1000);
      Throwable failure = catchThrowable(() -> stages.get(1).receivePrevious(1, new float[1000], 1000));
      assertThat(relay.flipped()).isTrue();
      String cause = "frame from rank 0 (" + group.peers.get(0) + ") failed its integrity check: altered or forged on "
          + "the way, its data not used";
      // The reader may have failed the links before the receive began: then the receive fails at once.
      assertThat(failure).isInstanceOf(CollectiveException.class).hasMessageEndingWith(": " + cause);
      assertThat(failure.getMessage()).satisfiesAnyOf(
          m -> assertThat(m).startsWith("Cannot complete receivePrevious(tag 1): "),
          m -> assertThat(m).startsWith("Cannot run receivePrevious(tag 1): the pipeline links of rank 1 of 2"));
      assertThat(((CollectiveException) failure).ranks()).containsExactly(0);
      assertThat(catchThrowable(() -> stages.get(0).receiveNext(1, new float[1], 1)))
          .isInstanceOf(CollectiveException.class).hasMessageEndingWith(": rank 1 reported: " + cause);
    }
  }

  @Test
  void withoutProtectionTheSameRelayChangesTheDataUnseen() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG, FrameIntegrity.NONE);
        Relay relay = IntegrityTest.relayInFrontOfRank1(group)) {
      List<PipeLinks> stages = connectThroughRelay(group, relay);
      stages.get(0).sendNext(1, ones(), 1000);
      float[] got = new float[1000];
      stages.get(1).receivePrevious(1, got, 1000);
      float[] expected = ones();
      expected[IntegrityTest.FLIPPED_FLOAT] = 0.25f;
      assertThat(got).isEqualTo(expected);
      assertThat(relay.flipped()).isTrue();
    }
  }

  private static float[] ones() {
    float[] data = new float[1000];
    Arrays.fill(data, 1);
    return data;
  }

  /** Stage 0 reaches stage 1 through the relay. */
  private static List<PipeLinks> connectThroughRelay(TestGroup group, Relay relay) throws Exception {
    List<PeerAddress> viaRelay = List.of(group.peers.get(0), relay.address());
    Future<PipeLinks> stage0 = group.connectStageAsync(0, viaRelay, PipeLinks.MAX_QUEUED_BYTES);
    Future<PipeLinks> stage1 = group.connectStageAsync(1);
    return List.of(TestGroup.get(stage0), TestGroup.get(stage1));
  }

  private static List<String> threadsNamed(String prefix) {
    return Thread.getAllStackTraces().keySet().stream()
        .filter(Thread::isAlive)
        .map(Thread::getName)
        .filter(name -> name.startsWith(prefix))
        .toList();
  }
}
