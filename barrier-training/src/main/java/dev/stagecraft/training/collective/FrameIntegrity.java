package dev.stagecraft.training.collective;

import java.util.Locale;

/**
 * How a ring connection's frames are protected after the handshake. Every rank of a run must use the same mode (the
 * handshake refuses a neighbour that uses another); the keys are the connection's own, one per direction, derived
 * from the run's secret and the handshake's fresh nonces.
 */
public enum FrameIntegrity {
  /**
   * Every frame carries a 16-byte HMAC-SHA256 tag over a per-direction sequence number and the frame: a host on the
   * path cannot change, inject, drop, replay or reorder frames unseen. The data travels readable.
   */
  MAC((byte) 1, 16),
  /**
   * Every frame's payload is encrypted with AES-256-GCM (the nonce is the per-direction sequence number, the header
   * is authenticated with it): everything {@link #MAC} protects against, and nobody on the path reads the data.
   */
  ENCRYPT((byte) 2, 16),
  /**
   * Frames as they are: only the handshake is authenticated, so a host on the path can read and change the data.
   * For trusted networks only.
   */
  NONE((byte) 0, 0);

  /**
   * The default. AES-GCM runs on the CPU's AES and carry-less multiply instructions (the JDK's intrinsics) and was
   * measured faster than HMAC-SHA256 per byte, and it also keeps the gradients (from which training data can be
   * reconstructed) from being read on the way.
   */
  public static final FrameIntegrity DEFAULT = ENCRYPT;

  private final byte code;
  private final int tagBytes;

  FrameIntegrity(byte code, int tagBytes) {
    this.code = code;
    this.tagBytes = tagBytes;
  }

  /** As written in configuration: {@code mac}, {@code encrypt}, {@code none}. */
  public String key() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** The mode named {@code value} (any case). */
  public static FrameIntegrity parse(String value) {
    for (FrameIntegrity f : values()) {
      if (f.key().equalsIgnoreCase(value.trim())) {
        return f;
      }
    }
    throw new IllegalArgumentException("unknown frame integrity '" + value + "' (expected mac, encrypt or none)");
  }

  /** Bytes added to every frame. */
  int tagBytes() {
    return tagBytes;
  }

  /** Its code in the handshake. */
  byte code() {
    return code;
  }

  /** The name of the mode with handshake code {@code code}, for messages. */
  static String describe(byte code) {
    for (FrameIntegrity f : values()) {
      if (f.code == code) {
        return f.key();
      }
    }
    return "unknown (" + code + ")";
  }
}
