package dev.stagecraft.training.collective;

import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * Protects the frames of one direction of one connection ({@link FrameIntegrity}). The sender seals each frame
 * (header and payload) in place and appends a tag; the receiver opens it in place and must not look at the frame
 * unless that succeeds. Both count frames: the count is the sequence number under the tag (and the AES-GCM nonce),
 * never sent, so a replayed, dropped or reordered frame fails like an altered one.
 *
 * <p>Not thread-safe: each direction is used under its connection's lock. Sealing works in place on the
 * communicator's own buffers and reuses its arrays: HMAC allocates nothing per frame worth counting (48 bytes); AES-GCM
 * about 14 KB per 1 MiB frame, inside the JCE (a cipher takes a new nonce only through {@code init}, which sets up
 * its state again), nothing the size of a frame.
 */
abstract class FrameSeal {
  /** Frames sealed or opened so far in this direction: the next frame's sequence number. */
  protected long sequence;

  /** No protection: tags of zero bytes, and every frame opens. */
  static final FrameSeal NONE = new FrameSeal() {
    @Override
    int tagBytes() {
      return 0;
    }

    @Override
    void seal(ByteBuffer frame) {}

    @Override
    boolean open(ByteBuffer buffer, int start, int length) {
      return true;
    }
  };

  /** A seal for one direction of a connection under {@code integrity} with that direction's {@code key}. */
  static FrameSeal of(FrameIntegrity integrity, byte[] key) {
    return switch (integrity) {
      case NONE -> NONE;
      case MAC -> new Hmac(key);
      case ENCRYPT -> new Gcm(key);
    };
  }

  /**
   * The frame sealed last was not sent at all (not one byte of it reached the socket): its sequence number is free
   * for the next frame, so that an abort notice sent instead still opens. Reusing an AES-GCM nonce is safe here: no
   * ciphertext under it left this process.
   */
  void withdraw() {
    if (sequence > 0) {
      sequence--;
    }
  }

  /** {@code frame} sealed: a copy with room for the tag (for abort notices, which are small and rarely sent). */
  byte[] sealedCopy(byte[] frame) {
    if (tagBytes() == 0) {
      return frame;
    }
    ByteBuffer b = ByteBuffer.allocate(frame.length + tagBytes());
    b.put(frame).flip();
    seal(b);
    return b.array();
  }

  /** Bytes a sealed frame is longer than the frame. */
  abstract int tagBytes();

  /**
   * Seals the frame between {@code frame}'s position and limit in place and appends the tag after it ({@code frame}
   * has the room); on return the limit includes the tag and the position is unchanged.
   */
  abstract void seal(ByteBuffer frame);

  /**
   * Opens the sealed frame of {@code length} bytes (tag excluded) at {@code start} of {@code buffer} in place, the
   * tag following it; false if it was altered, forged, replayed or reordered. {@code buffer}'s position and limit do
   * not change.
   */
  abstract boolean open(ByteBuffer buffer, int start, int length);

  /** HMAC-SHA256 over the sequence number and the frame, truncated to 16 bytes. */
  private static final class Hmac extends FrameSeal {
    private static final int TAG = 16;
    private final Mac mac;
    private final byte[] full = new byte[32];
    private final byte[] received = new byte[TAG];
    private final byte[] counter = new byte[Long.BYTES];

    Hmac(byte[] key) {
      try {
        mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("Cannot set up HMAC-SHA256 for frames: " + e.getMessage(), e);
      }
    }

    @Override
    int tagBytes() {
      return TAG;
    }

    @Override
    void seal(ByteBuffer frame) {
      int start = frame.position();
      int end = frame.limit();
      compute(frame, start, end);
      frame.limit(end + TAG);
      frame.put(end, full, 0, TAG);
      frame.position(start);
    }

    @Override
    boolean open(ByteBuffer buffer, int start, int length) {
      int position = buffer.position();
      int limit = buffer.limit();
      try {
        buffer.limit(start + length).position(start);
        compute(buffer, start, start + length);
        buffer.limit(start + length + TAG);
        buffer.get(start + length, received, 0, TAG);
      } finally {
        buffer.limit(limit).position(position);
      }
      int difference = 0; // constant time, as MessageDigest.isEqual, without copying the truncated tag
      for (int i = 0; i < TAG; i++) {
        difference |= full[i] ^ received[i];
      }
      return difference == 0;
    }

    /** The full MAC of the sequence number and {@code [start, end)} into {@link #full}; counts the frame. */
    private void compute(ByteBuffer frame, int start, int end) {
      long n = sequence++;
      for (int i = 0; i < Long.BYTES; i++) {
        counter[i] = (byte) (n >>> (56 - 8 * i));
      }
      mac.update(counter);
      frame.limit(end).position(start);
      mac.update(frame); // advances the position to the limit
      try {
        mac.doFinal(full, 0);
      } catch (javax.crypto.ShortBufferException e) {
        throw new IllegalStateException(e); // 32 bytes is HMAC-SHA256's length
      }
    }
  }

  /** AES-256-GCM: the header authenticated, the payload encrypted, a 16-byte tag; the nonce is the sequence number. */
  private static final class Gcm extends FrameSeal {
    private static final int TAG = 16;
    private Cipher cipher;
    private final SecretKeySpec key;
    private final byte[] nonce = new byte[12];
    private final byte[] header = new byte[Wire.HEADER_BYTES];

    Gcm(byte[] key) {
      this.cipher = newCipher();
      this.key = new SecretKeySpec(key, "AES");
    }

    private static Cipher newCipher() {
      try {
        return Cipher.getInstance("AES/GCM/NoPadding");
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("Cannot set up AES-GCM for frames: " + e.getMessage(), e);
      }
    }

    /** A cipher refuses to encrypt twice under one nonce; a new one takes the withdrawn frame's (see above). */
    @Override
    void withdraw() {
      super.withdraw();
      cipher = newCipher();
    }

    @Override
    int tagBytes() {
      return TAG;
    }

    @Override
    void seal(ByteBuffer frame) {
      int start = frame.position();
      int end = frame.limit();
      try {
        init(Cipher.ENCRYPT_MODE, frame, start);
        ByteBuffer in = frame.duplicate().limit(end).position(start + Wire.HEADER_BYTES);
        ByteBuffer out = frame.duplicate().limit(end + TAG).position(start + Wire.HEADER_BYTES);
        cipher.doFinal(in, out); // in place: same position in the same memory
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("Cannot encrypt a frame: " + e.getMessage(), e);
      }
      frame.limit(end + TAG).position(start);
    }

    @Override
    boolean open(ByteBuffer buffer, int start, int length) {
      try {
        init(Cipher.DECRYPT_MODE, buffer, start);
        ByteBuffer in = buffer.duplicate().limit(start + length + TAG).position(start + Wire.HEADER_BYTES);
        ByteBuffer out = buffer.duplicate().limit(start + length + TAG).position(start + Wire.HEADER_BYTES);
        cipher.doFinal(in, out);
        return true;
      } catch (AEADBadTagException e) {
        return false;
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("Cannot decrypt a frame: " + e.getMessage(), e);
      }
    }

    /** A fresh nonce (the sequence number: one key per direction, so never reused) and the header as AAD. */
    private void init(int mode, ByteBuffer frame, int start) throws GeneralSecurityException {
      long n = sequence++;
      for (int i = 0; i < Long.BYTES; i++) {
        nonce[4 + i] = (byte) (n >>> (56 - 8 * i));
      }
      cipher.init(mode, key, new GCMParameterSpec(TAG * 8, nonce));
      frame.get(start, header, 0, Wire.HEADER_BYTES);
      cipher.updateAAD(header);
    }
  }
}
