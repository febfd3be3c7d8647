package dev.stagecraft.training.collective;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Broadcast, barrier, allGather, groups of one, and long mixed sequences. */
@Timeout(60)
class OperationsTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(10);

  @ParameterizedTest(name = "{0} ranks")
  @ValueSource(ints = {2, 3, 4})
  void broadcastsFromEveryRootIncludingTheLast(int n) throws Exception {
    try (TestGroup group = TestGroup.connected(n, TIMEOUT)) {
      for (int length : new int[] {0, 1, 2 * Wire.CHUNK_FLOATS + 3}) {
        for (int root = n - 1; root >= 0; root--) {
          float[] source = AllReduceTest.randomInputs(1, length, root + 10L * length)[0];
          int r0 = root;
          List<float[]> results = group.onEachRank(c -> {
            float[] data = new float[length];
            if (c.rank() == r0) {
              System.arraycopy(source, 0, data, 0, length);
            } else {
              java.util.Arrays.fill(data, Float.NaN);
            }
            c.broadcast(data, r0);
            return data;
          });
          for (int r = 0; r < n; r++) {
            assertThat(results.get(r)).as("rank %d, root %d, length %d", r, root, length).isEqualTo(source);
          }
        }
      }
    }
  }

  @Test
  void rejectsABroadcastRootThatIsNotARankWithoutBreakingTheCommunicator() throws Exception {
    try (TestGroup group = TestGroup.connected(2, TIMEOUT)) {
      assertThatThrownBy(() -> group.rank(0).broadcast(new float[1], 2))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid broadcast root: 2 (expected 0..1)");
      assertThatThrownBy(() -> group.rank(0).broadcast(new float[1], -1))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid broadcast root: -1 (expected 0..1)");
      assertThatThrownBy(() -> group.rank(0).allReduceSum(null))
          .isInstanceOf(NullPointerException.class)
          .hasMessage("data is null");
      assertThat(group.onEachRank(c -> {
        c.barrier();
        return true;
      })).containsOnly(true);
    }
  }

  @Test
  void barrierWaitsForTheLastRank() throws Exception {
    try (TestGroup group = TestGroup.connected(3, TIMEOUT)) {
      AtomicBoolean lastArrived = new AtomicBoolean();
      List<Future<Boolean>> early = new ArrayList<>();
      for (int r = 0; r < 2; r++) {
        Communicator c = group.rank(r);
        early.add(group.submit(() -> {
          c.barrier();
          return lastArrived.get();
        }));
      }
      for (Future<Boolean> f : early) {
        assertThatThrownBy(() -> f.get(300, TimeUnit.MILLISECONDS)).isInstanceOf(TimeoutException.class);
      }
      Future<Boolean> last = group.submit(() -> {
        lastArrived.set(true);
        group.rank(2).barrier();
        return true;
      });
      assertThat(TestGroup.get(last)).isTrue();
      for (Future<Boolean> f : early) {
        assertThat(TestGroup.get(f)).as("the last rank had arrived when barrier returned").isTrue();
      }
    }
  }

  @ParameterizedTest(name = "{0} ranks")
  @ValueSource(ints = {1, 2, 4})
  void gathersOneByteArrayPerRank(int n) throws Exception {
    try (TestGroup group = TestGroup.connected(n, TIMEOUT)) {
      List<List<byte[]>> results = group.onEachRank(c -> c.allGather(("rank-" + c.rank()).repeat(c.rank())
          .getBytes(UTF_8)));
      for (List<byte[]> result : results) {
        assertThat(result).hasSize(n);
        for (int r = 0; r < n; r++) {
          assertThat(new String(result.get(r), UTF_8)).isEqualTo(("rank-" + r).repeat(r));
        }
      }
    }
  }

  @Test
  void refusesAnAllGatherPayloadAboveTheLimit() throws Exception {
    try (TestGroup group = TestGroup.connected(1, TIMEOUT)) {
      assertThatThrownBy(() -> group.rank(0).allGather(new byte[Communicator.MAX_ALL_GATHER_BYTES + 1]))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid allGather payload: 1048577 bytes (expected at most 1048576)");
    }
  }

  @Test
  void aGroupOfOneLeavesDataAsItIs() throws Exception {
    try (TestGroup group = TestGroup.connected(1, TIMEOUT)) {
      Communicator c = group.rank(0);
      float[] data = {1.5f, -2f};
      c.allReduceSum(data);
      c.allReduceMean(data);
      c.broadcast(data, 0);
      c.barrier();
      assertThat(data).containsExactly(1.5f, -2f);
      assertThat(c.allGather(new byte[] {7})).singleElement().isEqualTo(new byte[] {7});
      assertThat(c.worldSize()).isEqualTo(1);
      c.close();
      assertThatThrownBy(c::barrier).isInstanceOf(IllegalStateException.class)
          .hasMessage("Cannot run barrier: the communicator of rank 0 of 1 in group '" + group.groupId
              + "' is closed");
    }
  }

  @Test
  void keepsSequenceNumbersAlignedOverManyMixedOperations() throws Exception {
    int n = 3;
    int rounds = 60;
    try (TestGroup group = TestGroup.connected(n, TIMEOUT)) {
      List<Integer> checked = group.onEachRank(c -> {
        Random random = new Random(99); // same sequence of shapes on every rank
        int ok = 0;
        for (int i = 0; i < rounds; i++) {
          int length = random.nextInt(50);
          switch (i % 4) {
            case 0 -> {
              float[] data = new float[length];
              java.util.Arrays.fill(data, c.rank() + 1);
              c.allReduceSum(data);
              for (float v : data) {
                assertThat(v).isEqualTo(6f);
              }
            }
            case 1 -> {
              int root = random.nextInt(n);
              float[] data = new float[length];
              java.util.Arrays.fill(data, c.rank() == root ? i : -1);
              c.broadcast(data, root);
              for (float v : data) {
                assertThat(v).isEqualTo((float) i);
              }
            }
            case 2 -> c.barrier();
            default -> {
              byte round = (byte) i;
              assertThat(c.allGather(new byte[] {(byte) c.rank(), round})).satisfiesExactly(
                  b -> assertThat(b).containsExactly(0, round),
                  b -> assertThat(b).containsExactly(1, round),
                  b -> assertThat(b).containsExactly(2, round));
            }
          }
          ok++;
        }
        return ok;
      });
      assertThat(checked).containsOnly(rounds);
    }
  }
}
