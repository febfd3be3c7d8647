package dev.stagecraft.training.collective;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.util.Arrays;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** A sealed frame opens once, in order, unaltered, under its direction's key; anything else does not open. */
class FrameSealTest {
  private static final byte[] KEY = key(1);
  private static final byte[] OTHER_KEY = key(2);

  @ParameterizedTest
  @EnumSource(value = FrameIntegrity.class, names = {"MAC", "ENCRYPT"})
  void opensWhatWasSealedAndHidesItUnderEncryption(FrameIntegrity mode) {
    FrameSeal sender = FrameSeal.of(mode, KEY);
    FrameSeal receiver = FrameSeal.of(mode, KEY);
    byte[] plain = frame(1, 100);
    ByteBuffer sealed = seal(sender, plain);
    assertThat(sealed.remaining()).isEqualTo(plain.length + 16);
    byte[] onTheWire = Arrays.copyOf(sealed.array(), plain.length);
    assertThat(Arrays.equals(onTheWire, plain)).isEqualTo(mode == FrameIntegrity.MAC);
    assertThat(receiver.open(sealed, 0, plain.length)).isTrue();
    assertThat(Arrays.copyOf(sealed.array(), plain.length)).isEqualTo(plain);
  }

  @ParameterizedTest
  @EnumSource(value = FrameIntegrity.class, names = {"MAC", "ENCRYPT"})
  void anAlteredFrameDoesNotOpen(FrameIntegrity mode) {
    for (int at : new int[] {0, 12, Wire.HEADER_BYTES, Wire.HEADER_BYTES + 99, Wire.HEADER_BYTES + 100}) {
      ByteBuffer sealed = seal(FrameSeal.of(mode, KEY), frame(1, 100));
      sealed.put(at, (byte) (sealed.get(at) ^ 1)); // header, payload or tag
      assertThat(FrameSeal.of(mode, KEY).open(sealed, 0, Wire.HEADER_BYTES + 100)).as("flipped at " + at).isFalse();
    }
  }

  @ParameterizedTest
  @EnumSource(value = FrameIntegrity.class, names = {"MAC", "ENCRYPT"})
  void aReplayedOrReorderedFrameOrAnotherKeyDoesNotOpen(FrameIntegrity mode) {
    FrameSeal sender = FrameSeal.of(mode, KEY);
    ByteBuffer first = seal(sender, frame(1, 40));
    ByteBuffer second = seal(sender, frame(2, 40));
    int length = Wire.HEADER_BYTES + 40;

    FrameSeal reordered = FrameSeal.of(mode, KEY);
    assertThat(reordered.open(second.duplicate(), 0, length)).as("second frame first").isFalse();

    FrameSeal replayed = FrameSeal.of(mode, KEY);
    ByteBuffer copy = ByteBuffer.wrap(first.array().clone());
    assertThat(replayed.open(first, 0, length)).isTrue();
    assertThat(replayed.open(copy, 0, length)).as("the first frame again").isFalse();

    assertThat(FrameSeal.of(mode, OTHER_KEY).open(seal(FrameSeal.of(mode, KEY), frame(1, 40)), 0, length))
        .as("the other direction's key").isFalse();
  }

  @ParameterizedTest
  @EnumSource(value = FrameIntegrity.class, names = {"MAC", "ENCRYPT"})
  void aFrameWithdrawnBeforeAnyOfItWasSentGivesItsSequenceNumberToTheNext(FrameIntegrity mode) {
    FrameSeal sender = FrameSeal.of(mode, KEY);
    seal(sender, frame(1, 40)); // never sent
    sender.withdraw();
    ByteBuffer notice = seal(sender, frame(2, 10));
    assertThat(FrameSeal.of(mode, KEY).open(notice, 0, Wire.HEADER_BYTES + 10)).isTrue();
  }

  private static ByteBuffer seal(FrameSeal seal, byte[] frame) {
    ByteBuffer b = ByteBuffer.allocateDirect(frame.length + seal.tagBytes());
    b.put(frame).flip();
    seal.seal(b);
    ByteBuffer heap = ByteBuffer.allocate(b.remaining());
    heap.put(b).flip();
    return heap;
  }

  private static byte[] frame(int seq, int payload) {
    ByteBuffer b = ByteBuffer.allocate(Wire.HEADER_BYTES + payload);
    Wire.putHeader(b, Wire.ALL_GATHER, seq, 0, 0, payload);
    for (int i = 0; i < payload; i++) {
      b.put((byte) i);
    }
    return b.array();
  }

  private static byte[] key(int seed) {
    byte[] k = new byte[32];
    Arrays.fill(k, (byte) seed);
    return k;
  }
}
