package dev.stagecraft.inference.bundle;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ParameterFileTest {

  @Test
  void roundTripIsBitExactIncludingSpecialValues() throws IOException {
    float[] values = new float[40_000]; // more than one 16 Ki-float chunk
    SplittableRandom random = new SplittableRandom(3);
    for (int i = 0; i < values.length; i++) {
      values[i] = (float) random.nextGaussian();
    }
    float[] special = {-0.0f, Float.MIN_VALUE, Float.MAX_VALUE, Float.NEGATIVE_INFINITY, Float.intBitsToFloat(0x7fc00123)};
    System.arraycopy(special, 0, values, 100, special.length);

    byte[] bytes = write(values);
    assertThat(bytes).hasSize(12 + values.length * 4 + 8);
    float[] read = ParameterFile.read(new ByteArrayInputStream(bytes));
    assertThat(read).hasSize(values.length);
    for (int i = 0; i < values.length; i++) {
      assertThat(Float.floatToRawIntBits(read[i])).as("value %d", i).isEqualTo(Float.floatToRawIntBits(values[i]));
    }
  }

  @Test
  void emptyVectorRoundTrips() throws IOException {
    assertThat(ParameterFile.read(new ByteArrayInputStream(write(new float[0])))).isEmpty();
  }

  @Test
  void readStopsAtTheEndOfTheFile() throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ParameterFile.write(new float[] {1, 2}, out);
    out.write(new byte[] {42});
    ByteArrayInputStream in = new ByteArrayInputStream(out.toByteArray());
    assertThat(ParameterFile.read(in)).containsExactly(1f, 2f);
    assertThat(in.read()).isEqualTo(42);
  }

  @Test
  void corruptFilesAreRefused() throws IOException {
    byte[] good = write(new float[] {1, 2, 3});

    byte[] badMagic = good.clone();
    badMagic[0] = 'X';
    assertThatThrownBy(() -> ParameterFile.read(new ByteArrayInputStream(badMagic)))
        .isInstanceOf(IOException.class)
        .hasMessage("Invalid parameter file: magic 0x58435057 (expected 0x53435057)");

    byte[] badVersion = good.clone();
    badVersion[7] = 9;
    assertThatThrownBy(() -> ParameterFile.read(new ByteArrayInputStream(badVersion)))
        .hasMessage("Unsupported parameter file version: 9 (supported: 1)");

    byte[] flipped = good.clone();
    flipped[14] ^= 1;
    assertThatThrownBy(() -> ParameterFile.read(new ByteArrayInputStream(flipped)))
        .hasMessageStartingWith("Invalid parameter file: CRC-32 ")
        .hasMessageContaining("of 3 values");

    byte[] truncated = Arrays.copyOf(good, good.length - 3);
    assertThatThrownBy(() -> ParameterFile.read(new ByteArrayInputStream(truncated)))
        .isInstanceOf(EOFException.class);
  }

  private static byte[] write(float[] values) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ParameterFile.write(values, out);
    return out.toByteArray();
  }
}
