package dev.stagecraft.training.collective;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Frames after the handshake under each {@link FrameIntegrity}: every operation gives the same answer in every mode,
 * and a host on the path that flips one byte of a frame makes the step fail naming the sender under {@code mac} and
 * {@code encrypt}, while under {@code none} it silently changes the result.
 */
@Timeout(60)
class IntegrityTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(10);
  private static final int LENGTH = 1000;
  /** Float 25 of the first frame rank 0 sends: its top byte, 0x3F of 1.0f, becomes 0x3E (0.25f). */
  static final int FLIPPED_FLOAT = 25;

  @ParameterizedTest
  @EnumSource(FrameIntegrity.class)
  void everyOperationGivesTheSameAnswerInEveryMode(FrameIntegrity mode) throws Exception {
    int length = 2 * Wire.CHUNK_FLOATS * 3 + 7; // several chunks per segment, segments of unequal length
    try (TestGroup group = TestGroup.connected(3, TIMEOUT, mode)) {
      List<float[]> sums = group.onEachRank(c -> {
        float[] data = new float[length];
        for (int i = 0; i < length; i++) {
          data[i] = (c.rank() + 1) * (i % 97);
        }
        c.allReduceSum(data);
        return data;
      });
      for (float[] sum : sums) {
        for (int i = 0; i < length; i += 1013) {
          assertThat(sum[i]).isEqualTo(6f * (i % 97));
        }
        assertThat(sum).isEqualTo(sums.get(0));
      }
      List<float[]> broadcast = group.onEachRank(c -> {
        float[] data = new float[5];
        if (c.rank() == 2) {
          data = new float[] {1, 2, 3, 4, 5};
        }
        c.broadcast(data, 2);
        return data;
      });
      assertThat(broadcast).allSatisfy(d -> assertThat(d).containsExactly(1, 2, 3, 4, 5));
      List<List<byte[]>> gathered = group.onEachRank(c -> {
        c.barrier();
        return c.allGather(("rank " + c.rank()).getBytes(StandardCharsets.UTF_8));
      });
      assertThat(gathered).allSatisfy(items -> assertThat(items.stream()
          .map(b -> new String(b, StandardCharsets.UTF_8)).toList()).containsExactly("rank 0", "rank 1", "rank 2"));
    }
  }

  @ParameterizedTest
  @EnumSource(value = FrameIntegrity.class, names = {"MAC", "ENCRYPT"})
  void aByteFlippedOnTheWayFailsTheStepNamingTheSender(FrameIntegrity mode) throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT, mode); Relay relay = relayInFrontOfRank1(group)) {
      List<Future<float[]>> reducing = reduceThroughRelay(group, relay);
      Throwable atRank1 = TestGroup.failureOf(reducing.get(1));
      assertThat(relay.flipped()).isTrue();
      assertThat(atRank1).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete allReduceSum #1: frame from rank 0 (" + group.peers.get(0) + ") failed its "
              + "integrity check: altered or forged on the way, its data not used");
      assertThat(((CollectiveException) atRank1).ranks()).containsExactly(0);
      Throwable atRank0 = TestGroup.failureOf(reducing.get(0));
      assertThat(atRank0).isInstanceOf(CollectiveException.class).hasMessageContaining(
          "rank 1 reported: frame from rank 0 (" + group.peers.get(0) + ") failed its integrity check");
    }
  }

  @Test
  void withoutProtectionTheSameRelayChangesTheResultUnseen() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT, FrameIntegrity.NONE); Relay relay = relayInFrontOfRank1(group)) {
      List<Future<float[]>> reducing = reduceThroughRelay(group, relay);
      float[] expected = new float[LENGTH];
      Arrays.fill(expected, 3);
      expected[FLIPPED_FLOAT] = 2.25f; // 0.25 from rank 0 as altered, plus rank 1's 2
      for (Future<float[]> f : reducing) {
        assertThat(TestGroup.get(f)).isEqualTo(expected);
      }
      assertThat(relay.flipped()).isTrue();
    }
  }

  @Test
  void ranksOfOneRunMustUseTheSameMode() throws Exception {
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(2), FrameIntegrity.MAC)) {
      Future<Communicator> rank1 = group.connectAsync(1);
      Future<Communicator> rank0 = group.submit(() ->
          Communicator.connect(group.servers.get(0), group.spec(0), TestGroup.SECRET, FrameIntegrity.NONE));
      assertThat(TestGroup.failureOf(rank0)).isInstanceOf(CollectiveException.class).hasMessageContaining(
          "rank 1 at " + group.peers.get(1) + " rejected this rank: frame integrity 'none' (rank 1 uses 'mac'; every "
              + "rank of a run must use the same)");
      TestGroup.failureOf(rank1);
    }
  }

  /**
   * A relay to rank 1 that flips the top byte of float 25 in the first frame rank 0 sends after the handshake (1.0f
   * becomes 0.25f); also for pipeline stages, whose handshake has the same length.
   */
  static Relay relayInFrontOfRank1(TestGroup group) throws Exception {
    int hello = 4 + 1 + 2 + group.groupId.getBytes(StandardCharsets.UTF_8).length + 4 + 4 + 1
        + Handshake.NONCE_BYTES + Handshake.MAC_BYTES;
    int handshake = hello + 1; // and the client's final OK
    long flipAt = handshake + Wire.HEADER_BYTES + FLIPPED_FLOAT * Float.BYTES + 3;
    return new Relay(group.peers.get(1), flipAt, 0x01, 0);
  }

  /** Rank 0 reaches rank 1 through the relay; each adds an array of (rank + 1)s. */
  private static List<Future<float[]>> reduceThroughRelay(TestGroup group, Relay relay) throws Exception {
    List<PeerAddress> viaRelay = List.of(group.peers.get(0), relay.address());
    Future<Communicator> rank0 = group.connectAsync(0, viaRelay, TIMEOUT);
    Future<Communicator> rank1 = group.connectAsync(1);
    List<Communicator> ranks = List.of(TestGroup.get(rank0), TestGroup.get(rank1));
    List<Future<float[]>> reducing = new ArrayList<>();
    for (Communicator c : ranks) {
      reducing.add(group.submit(() -> {
        float[] data = new float[LENGTH];
        Arrays.fill(data, c.rank() + 1);
        c.allReduceSum(data);
        return data;
      }));
    }
    return reducing;
  }
}
