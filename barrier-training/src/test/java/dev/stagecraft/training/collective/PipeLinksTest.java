package dev.stagecraft.training.collective;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.testing.LogCapture;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.net.SocketException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Pipeline links between stages in threads of this JVM, over real loopback sockets: messages arrive intact in both
 * directions under a 1F1B schedule, large arrays cross at the same moment, strangers and other groups are refused,
 * and every failure (timeout, closed or dead neighbour, out of sync, altered frame) names the rank and its address.
 */
@Timeout(120)
class PipeLinksTest {
  private static final Duration LONG = Duration.ofSeconds(10);
  private static final Duration SHORT = Duration.ofMillis(400);
  private static final byte[] WRONG_SECRET = "not-the-secret-0123456789".getBytes(UTF_8);
  private static final int FORWARD = 1;
  private static final int BACKWARD = 2;
  /** Message lengths by micro-batch: empty, tiny, a whole chunk, several chunks with a remainder. */
  private static final int[] LENGTHS = {0, 1, 1000, Wire.CHUNK_FLOATS, 2 * Wire.CHUNK_FLOATS + 3, 37};

  @FunctionalInterface
  interface StageTask<T> {
    T run(PipeLinks stage) throws Exception;
  }

  // ---- data ----------------------------------------------------------------------------------------------------

  @ParameterizedTest
  @ValueSource(ints = {2, 3})
  void aOneForwardOneBackwardScheduleCarriesEveryMessageIntactBothWays(int stages) throws Exception {
    int microBatches = 8;
    try (TestGroup group = TestGroup.bind(stages, LONG)) {
      group.connectPipeline();
      List<Long> sent = onEachStage(group, p -> {
        oneForwardOneBackward(p, microBatches);
        return p.bytesSent();
      });
      long perDirection = 0;
      for (int m = 0; m < microBatches; m++) {
        perDirection += (long) Float.BYTES * length(m);
      }
      for (int s = 0; s < stages; s++) {
        int directions = (s > 0 ? 1 : 0) + (s < stages - 1 ? 1 : 0);
        assertThat(sent.get(s)).as("payload bytes sent by stage %d", s).isEqualTo(directions * perDirection);
      }
    }
  }

  @Test
  void sixteenMillionFloatsCrossBothWaysAtTheSameMomentWithoutDeadlock() throws Exception {
    int length = 16 << 20; // 64 MiB each way, many times the sockets' buffers
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(30))) {
      group.connectPipeline();
      List<Long> sent = onEachStage(group, p -> {
        float sign = p.rank() == 0 ? 1 : -1;
        float[] out = new float[length];
        for (int i = 0; i < length; i++) {
          out[i] = sign * i;
        }
        float[] in = new float[length];
        if (p.rank() == 0) { // both send first, then receive: 1F1B's activation and gradient crossing
          p.sendNext(1, out, length);
          p.receiveNext(2, in, length);
        } else {
          p.sendPrevious(2, out, length);
          p.receivePrevious(1, in, length);
        }
        for (int i = 0; i < length; i++) {
          if (in[i] != -sign * i) {
            throw new AssertionError("stage " + p.rank() + " received " + in[i] + " at " + i);
          }
        }
        return p.bytesSent();
      });
      assertThat(sent).containsExactly(4L * length, 4L * length);
    }
  }

  @Test
  void receiveWaitGrowsWhileAReceiverWaitsForItsSender() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      group.connectPipeline();
      long before = group.stage(1).receiveWaitNanos();
      Future<Object> sender = group.submit(() -> {
        Thread.sleep(300);
        group.stage(0).sendNext(5, new float[] {1, 2, 3}, 3);
        return null;
      });
      float[] got = new float[4];
      group.stage(1).receivePrevious(5, got, 3);
      TestGroup.get(sender);
      assertThat(got).containsExactly(1, 2, 3, 0);
      assertThat(group.stage(1).receiveWaitNanos() - before).isGreaterThanOrEqualTo(TimeUnit.MILLISECONDS.toNanos(200));
    }
  }

  @Test
  void aFullQueueHoldsTheSenderBackUntilTheReceiverTakesTheData() throws Exception {
    int length = 16 << 20;
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      connectWithQueueLimit(group, Wire.CHUNK_BYTES);
      float[] out = new float[length];
      for (int i = 0; i < length; i++) {
        out[i] = i;
      }
      Future<Object> sending = group.submit(() -> {
        group.stage(0).sendNext(1, out, length);
        return null;
      });
      Thread.sleep(500);
      assertThat(sending.isDone()).as("the sender waits: 1 MiB queued and the sockets' buffers are full").isFalse();
      float[] in = new float[length];
      group.stage(1).receivePrevious(1, in, length);
      TestGroup.get(sending);
      assertThat(in).isEqualTo(out);
    }
  }

  // ---- connecting ----------------------------------------------------------------------------------------------

  @Test
  void connectTimesOutNamingTheStageThatNeverShowsUp() throws Exception {
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(1), LONG)) { // stage 1 never connects
      Throwable failure = TestGroup.failureOf(group.connectStageAsync(0));
      assertThat(failure).isInstanceOf(CollectiveTimeoutException.class).hasMessageStartingWith("Cannot connect rank 0"
          + " of 2 in group '" + group.groupId + "': rank 1 at " + group.peers.get(1) + " did not complete an "
          + "authenticated connection within 1s (last error: ");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(1);
      assertThat(group.servers.get(0).isClosed()).as("connect closes the listening socket").isTrue();
    }
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(1), LONG)) { // stage 0 never connects
      Throwable failure = TestGroup.failureOf(group.connectStageAsync(1));
      assertThat(failure).isInstanceOf(CollectiveTimeoutException.class).hasMessage("Cannot connect rank 1 of 2 in "
          + "group '" + group.groupId + "': no authenticated connection from rank 0 within 1s");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(0);
    }
  }

  @Test
  void aStageWithTheWrongSecretIsRefusedAndBothSidesNameTheOther() throws Exception {
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(2));
        LogCapture log = new LogCapture(RingConnector.class)) {
      Future<PipeLinks> stage1 = group.connectStageAsync(1);
      Future<PipeLinks> stage0 = group.submit(() ->
          PipeLinks.connect(group.servers.get(0), group.spec(0), WRONG_SECRET, group.integrity));
      Throwable at0 = TestGroup.failureOf(stage0);
      assertThat(at0).isInstanceOf(CollectiveException.class).hasMessage("Cannot connect rank 0 of 2 in group '"
          + group.groupId + "': rank 1 at " + group.peers.get(1) + " refused this rank (different secret, group or "
          + "world size? that rank's log says which)");
      assertThat(((CollectiveException) at0).ranks()).containsExactly(1);
      Throwable at1 = TestGroup.failureOf(stage1);
      assertThat(at1).isInstanceOf(CollectiveTimeoutException.class).hasMessageStartingWith("Cannot connect rank 1 "
          + "of 2 in group '" + group.groupId + "': no authenticated connection from rank 0 within 2s (rejected ");
      assertThat(((CollectiveException) at1).ranks()).containsExactly(0);
      assertThat(log.lines()).anySatisfy(line -> assertThat(line)
          .startsWith("WARN Rejected connection from /127.0.0.1:")
          .endsWith(" to rank 1 of 2 in group '" + group.groupId
              + "': authentication failed for claimed rank 0 (wrong secret?) (the client was told only: refused)"));
    }
  }

  @Test
  void aStageOfAnotherGroupIsRejected() throws Exception {
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(2));
        LogCapture log = new LogCapture(RingConnector.class)) {
      Future<PipeLinks> stage1 = group.connectStageAsync(1);
      GroupSpec otherRun = new GroupSpec("other-run", 0, group.peers, Duration.ofSeconds(2));
      Throwable at0 = TestGroup.failureOf(group.submit(() ->
          PipeLinks.connect(group.servers.get(0), otherRun, TestGroup.SECRET, group.integrity)));
      assertThat(at0).isInstanceOf(CollectiveException.class).hasMessage("Cannot connect rank 0 of 2 in group "
          + "'other-run': rank 1 at " + group.peers.get(1) + " rejected this rank: group 'other-run' (expected '"
          + group.groupId + "')");
      assertThat(((CollectiveException) at0).ranks()).containsExactly(1);
      assertThat(((CollectiveException) TestGroup.failureOf(stage1)).ranks()).containsExactly(0);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Rejected connection from /127.0.0.1:")
          && line.endsWith(": group 'other-run' (expected '" + group.groupId + "')"));
    }
  }

  @Test
  void aRingRankOfTheSameGroupCannotPassForAStage() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<PipeLinks> stage1 = group.connectStageAsync(1);
      Handshake ringRank0 = new Handshake(group.groupId, 2, 0, TestGroup.SECRET, group.integrity, Channel.RING);
      try (Socket socket = connectTo(group, 1)) {
        assertThatThrownBy(() -> ringRank0.connectTo(socket, 1)).isInstanceOf(Handshake.Rejected.class)
            .hasMessage("refused this rank (different secret, group or world size? that rank's log says which)");
      }
      assertStagesStillConnectAndExchange(group, stage1);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Rejected connection from /127.0.0.1:")
          && line.endsWith(": authentication failed for claimed rank 0 (wrong secret?) (the client was told only: "
              + "refused)"));
    }
  }

  @Test
  void aStrangerSendingRandomBytesFirstIsRefusedAndTheRealStageStillConnects() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<PipeLinks> stage1 = group.connectStageAsync(1);
      try (Socket socket = connectTo(group, 1)) {
        socket.getInputStream().readNBytes(4 + 1 + Handshake.NONCE_BYTES); // the greeting
        byte[] garbage = new byte[4096];
        new Random(7).nextBytes(garbage);
        socket.getOutputStream().write(garbage);
        assertThat(readsEndOfStream(socket.getInputStream())).as("stage 1 hung up on the stranger").isTrue();
      }
      assertStagesStillConnectAndExchange(group, stage1);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Rejected connection from /127.0.0.1:")
          && line.endsWith(" to rank 1 of 2 in group '" + group.groupId + "': not a Stagecraft collective peer "
              + "(unexpected greeting)"));
    }
  }

  @Test
  void aSingleStageHasNoLinksAndRefusesEveryTransfer() throws Exception {
    try (TestGroup group = TestGroup.bind(1, LONG)) {
      PipeLinks alone = group.connectPipeline().get(0);
      assertThat(group.servers.get(0).isClosed()).isTrue();
      assertThat(alone.rank()).isZero();
      assertThat(alone.worldSize()).isOne();
      float[] data = new float[1];
      assertThatThrownBy(() -> alone.sendNext(1, data, 1)).isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Cannot sendNext on rank 0 of 1 in group '" + group.groupId + "': it is the last stage (there "
              + "is no next rank)");
      assertThatThrownBy(() -> alone.receivePrevious(1, data, 1)).isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("it is the first stage (there is no previous rank)");
      assertThatThrownBy(() -> alone.sendPrevious(1, data, 1)).isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> alone.receiveNext(1, data, 1)).isInstanceOf(IllegalArgumentException.class);
      assertThat(alone.bytesSent()).isZero();
    }
  }

  @Test
  void invalidArgumentsAreRefusedBeforeAnyIoAndLeaveTheLinksWorking() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      group.connectPipeline();
      PipeLinks first = group.stage(0);
      PipeLinks last = group.stage(1);
      float[] two = new float[2];
      assertThatThrownBy(() -> first.receivePrevious(1, two, 1)).isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Cannot receivePrevious on rank 0 of 2 in group '" + group.groupId + "': it is the first stage "
              + "(there is no previous rank)");
      assertThatThrownBy(() -> first.sendPrevious(1, two, 1)).isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> last.sendNext(1, two, 1)).isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("it is the last stage (there is no next rank)");
      assertThatThrownBy(() -> last.receiveNext(1, two, 1)).isInstanceOf(IllegalArgumentException.class);
      assertThatThrownBy(() -> first.sendNext(1, null, 0)).isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid data for sendNext: null");
      assertThatThrownBy(() -> first.sendNext(1, two, -1)).isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid length for sendNext: -1 (expected 0..2, the array's length)");
      assertThatThrownBy(() -> last.receivePrevious(1, two, 3)).isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid length for receivePrevious: 3 (expected 0..2, the array's length)");
      first.sendNext(1, new float[] {1, 2}, 2);
      last.receivePrevious(1, two, 2);
      assertThat(two).containsExactly(1, 2);
      assertThat(first.bytesSent()).isEqualTo(8);
    }
  }

  // ---- helpers -------------------------------------------------------------------------------------------------

  /** The standard 1F1B order: warm-up forwards, then one forward and one backward, then the last backwards. */
  private static void oneForwardOneBackward(PipeLinks p, int microBatches) {
    int warmup = Math.min(p.worldSize() - 1 - p.rank(), microBatches);
    for (int m = 0; m < warmup; m++) {
      forward(p, m);
    }
    for (int m = 0; m < microBatches - warmup; m++) {
      forward(p, warmup + m);
      backward(p, m);
    }
    for (int m = microBatches - warmup; m < microBatches; m++) {
      backward(p, m);
    }
  }

  private static void forward(PipeLinks p, int m) {
    float[] activations = new float[length(m) + 3]; // longer than the message: only [0, length) is touched
    if (p.rank() > 0) {
      p.receivePrevious(tag(FORWARD, m), activations, length(m));
      assertValues(activations, FORWARD, m, p.rank() - 1);
    }
    if (p.rank() < p.worldSize() - 1) {
      fill(activations, FORWARD, m, p.rank());
      p.sendNext(tag(FORWARD, m), activations, length(m));
    }
  }

  private static void backward(PipeLinks p, int m) {
    float[] gradients = new float[length(m)];
    if (p.rank() < p.worldSize() - 1) {
      p.receiveNext(tag(BACKWARD, m), gradients, length(m));
      assertValues(gradients, BACKWARD, m, p.rank() + 1);
    }
    if (p.rank() > 0) {
      fill(gradients, BACKWARD, m, p.rank());
      p.sendPrevious(tag(BACKWARD, m), gradients, length(m));
    }
  }

  private static int length(int m) {
    return LENGTHS[m % LENGTHS.length];
  }

  private static int tag(int direction, int m) {
    return direction * 100 + m;
  }

  /** Exact in a float: below 2^24. */
  private static float value(int direction, int m, int stage, int i) {
    return direction * 1_000_000 + m * 10_000 + stage * 1_000 + i % 997;
  }

  private static void fill(float[] data, int direction, int m, int stage) {
    for (int i = 0; i < length(m); i++) {
      data[i] = value(direction, m, stage, i);
    }
  }

  private static void assertValues(float[] data, int direction, int m, int from) {
    for (int i = 0; i < data.length; i++) {
      float expected = i < length(m) ? value(direction, m, from, i) : 0;
      if (data[i] != expected) {
        throw new AssertionError("message " + tag(direction, m) + " from stage " + from + ": " + data[i] + " at " + i
            + ", expected " + expected);
      }
    }
  }

  /** Runs {@code task} on every stage concurrently; the results, index = rank. */
  static <T> List<T> onEachStage(TestGroup group, StageTask<T> task) throws Exception {
    List<Future<T>> futures = new ArrayList<>();
    for (int r = 0; r < group.size; r++) {
      PipeLinks stage = group.stage(r);
      futures.add(group.submit(() -> task.run(stage)));
    }
    List<T> results = new ArrayList<>();
    for (Future<T> f : futures) {
      results.add(TestGroup.get(f));
    }
    return results;
  }

  static void connectWithQueueLimit(TestGroup group, long maxQueuedBytes) throws Exception {
    List<Future<PipeLinks>> connecting = new ArrayList<>();
    for (int r = 0; r < group.size; r++) {
      connecting.add(group.connectStageAsync(r, group.peers, maxQueuedBytes));
    }
    for (Future<PipeLinks> f : connecting) {
      TestGroup.get(f);
    }
  }

  /** Connects stage 0 (stage 1 is connecting, as {@code stage1}) and sends one message: nothing before mattered. */
  private static void assertStagesStillConnectAndExchange(TestGroup group, Future<PipeLinks> stage1)
      throws Exception {
    PipeLinks first = TestGroup.get(group.connectStageAsync(0));
    PipeLinks second = TestGroup.get(stage1);
    first.sendNext(1, new float[] {3, 4}, 2);
    float[] got = new float[2];
    second.receivePrevious(1, got, 2);
    assertThat(got).containsExactly(3, 4);
  }

  static Socket connectTo(TestGroup group, int rank) throws IOException {
    Socket socket = new Socket();
    socket.connect(group.peers.get(rank).resolve(), 2_000);
    socket.setSoTimeout(5_000);
    return socket;
  }

  private static boolean readsEndOfStream(InputStream in) throws IOException {
    try {
      return in.read() == -1;
    } catch (SocketException e) {
      return true; // reset after the rank closed: closed as well
    }
  }
}
