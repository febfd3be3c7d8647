package dev.stagecraft.training.collective;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

@Timeout(60)
class AllReduceTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(10);

  @ParameterizedTest(name = "{0} ranks")
  @ValueSource(ints = {1, 2, 3, 4})
  void sumsArraysOfEveryShapeOnEveryRank(int n) throws Exception {
    // 0 and lengths below n leave segments empty; CHUNK_FLOATS * n + 7 gives several chunks of uneven segments.
    int[] lengths = {0, 1, Math.max(0, n - 1), n, n + 1, 1_000, 2 * Wire.CHUNK_FLOATS * n + 7};
    try (TestGroup group = TestGroup.connected(n, TIMEOUT)) {
      for (int length : lengths) {
        float[][] inputs = randomInputs(n, length, 31L * length + n);
        List<float[]> results = group.onEachRank(c -> {
          float[] data = inputs[c.rank()].clone();
          c.allReduceSum(data);
          return data;
        });
        assertSums(inputs, results);
      }
    }
  }

  @Test
  void sumsThreeMillionFloatsOnFourRanks() throws Exception {
    int n = 4;
    int length = 3_000_000;
    float[][] inputs = randomInputs(n, length, 42);
    try (TestGroup group = TestGroup.connected(n, TIMEOUT)) {
      List<float[]> results = group.onEachRank(c -> {
        float[] data = inputs[c.rank()].clone();
        c.allReduceSum(data);
        return data;
      });
      assertSums(inputs, results);
    }
  }

  @Test
  void averagesWithMean() throws Exception {
    int n = 3;
    float[][] inputs = randomInputs(n, 10_001, 7);
    try (TestGroup group = TestGroup.connected(n, TIMEOUT)) {
      List<float[]> results = group.onEachRank(c -> {
        float[] data = inputs[c.rank()].clone();
        c.allReduceMean(data);
        return data;
      });
      double worst = 0; // error in units of the tolerance
      for (int i = 0; i < inputs[0].length; i++) {
        double mean = (inputs[0][i] + (double) inputs[1][i] + inputs[2][i]) / n;
        double magnitude = Math.abs(inputs[0][i]) + Math.abs(inputs[1][i]) + Math.abs(inputs[2][i]);
        worst = Math.max(worst, Math.abs(results.get(0)[i] - mean) / (n * Math.ulp((float) magnitude)));
      }
      assertThat(worst).isLessThanOrEqualTo(1.0);
      assertThat(results.get(1)).isEqualTo(results.get(0));
      assertThat(results.get(2)).isEqualTo(results.get(0));
    }
  }

  @Test
  void sumsExactlyWhatIntegerValuedFloatsAddUpTo() throws Exception {
    // Small integers add exactly in any order: a wrong segment or a skipped step shows as a wrong value.
    int n = 4;
    int length = Wire.CHUNK_FLOATS * 5 + 3;
    try (TestGroup group = TestGroup.connected(n, TIMEOUT)) {
      List<float[]> results = group.onEachRank(c -> {
        float[] data = new float[length];
        for (int i = 0; i < length; i++) {
          data[i] = (i % 97) + 1000 * c.rank();
        }
        c.allReduceSum(data);
        return data;
      });
      for (float[] result : results) {
        for (int i = 0; i < length; i++) {
          if (result[i] != 4 * (i % 97) + 1000 * (0 + 1 + 2 + 3)) {
            throw new AssertionError("element " + i + " is " + result[i]);
          }
        }
      }
    }
  }

  @Test
  void segmentsCoverTheArrayExactlyOnce() {
    for (int n = 1; n <= 5; n++) {
      for (int length : new int[] {0, 1, 4, 5, 6, 17, 1_000_003}) {
        int expectedStart = 0;
        for (int i = 0; i < n; i++) {
          assertThat(RingCommunicator.segmentStart(length, i, n)).isEqualTo(expectedStart);
          int segment = RingCommunicator.segmentLength(length, i, n);
          assertThat(segment).isBetween(length / n, length / n + 1);
          expectedStart += segment;
        }
        assertThat(expectedStart).isEqualTo(length);
      }
    }
    assertThat(RingCommunicator.chunks(0)).isEqualTo(1);
    assertThat(RingCommunicator.chunks(Wire.CHUNK_FLOATS)).isEqualTo(1);
    assertThat(RingCommunicator.chunks(Wire.CHUNK_FLOATS + 1)).isEqualTo(2);
    assertThat(RingCommunicator.chunks(Integer.MAX_VALUE)).isEqualTo((Integer.MAX_VALUE >> 18) + 1);
  }

  static float[][] randomInputs(int n, int length, long seed) {
    Random random = new Random(seed);
    float[][] inputs = new float[n][length];
    for (float[] input : inputs) {
      for (int i = 0; i < length; i++) {
        input[i] = (float) (random.nextGaussian() * 10);
      }
    }
    return inputs;
  }

  /** Every rank holds the sum (within float rounding for n terms) and all ranks hold the same bits. */
  static void assertSums(float[][] inputs, List<float[]> results) {
    int length = inputs[0].length;
    List<String> wrong = new ArrayList<>();
    for (int i = 0; i < length && wrong.size() < 5; i++) {
      double sum = 0;
      double magnitude = 0;
      for (float[] input : inputs) {
        sum += input[i];
        magnitude += Math.abs(input[i]);
      }
      double tolerance = inputs.length * Math.ulp((float) magnitude);
      float got = results.get(0)[i];
      if (Math.abs(got - sum) > tolerance) {
        wrong.add("element " + i + ": " + got + " (expected " + sum + " ± " + tolerance + ")");
      }
    }
    assertThat(wrong).as("length %d", length).isEmpty();
    for (int r = 1; r < results.size(); r++) {
      assertThat(Arrays.equals(results.get(r), results.get(0))).as("rank %d equals rank 0 bit for bit", r).isTrue();
    }
  }
}
