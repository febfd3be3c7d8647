package dev.stagecraft.training.model;

import static java.util.Objects.requireNonNull;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.function.Supplier;

/** What {@link Sgd} and {@link Adam} share: the exported state format and argument checks. */
final class OptimizerStates {
  private OptimizerStates() {}

  /** Magic of {@link Optimizer#exportState()}: "SCOS". */
  static final int MAGIC = 0x53434f53;

  static final int VERSION = 1;

  /** The exported form shared by the implementations: header, step count, then whole buffers. */
  /** {@code lr} if it is a positive finite number; else names the optimizer and the value. */
  static float requireLr(String optimizer, float lr) {
    if (!(lr > 0) || Float.isInfinite(lr)) {
      throw new IllegalArgumentException(
          "Invalid " + optimizer + " learning rate: " + lr + " (expected a positive number)");
    }
    return lr;
  }

  /** Copies {@code buffers} now; the supplier encodes the copies (header, step count, then whole buffers). */
  static Supplier<byte[]> snapshot(String name, int numParameters, long steps, float[]... buffers) {
    float[][] copies = new float[buffers.length][];
    for (int i = 0; i < buffers.length; i++) {
      copies[i] = buffers[i].clone();
    }
    return () -> encodeState(name, numParameters, steps, copies);
  }

  /**
   * One allocation, one pass: the header as {@link java.io.DataOutputStream} writes it ({@code writeUTF} for the name, which
   * is ASCII), then the buffers, big-endian.
   */
  static byte[] encodeState(String name, int numParameters, long steps, float[]... buffers) {
    byte[] nameBytes = name.getBytes(StandardCharsets.US_ASCII);
    int header = 4 + 4 + 2 + nameBytes.length + 4 + 8 + 4;
    ByteBuffer out = ByteBuffer.allocate(header + buffers.length * numParameters * Float.BYTES);
    out.putInt(MAGIC).putInt(VERSION).putShort((short) nameBytes.length).put(nameBytes).putInt(numParameters)
        .putLong(steps).putInt(buffers.length);
    for (float[] buffer : buffers) {
      out.asFloatBuffer().put(buffer, 0, numParameters);
      out.position(out.position() + numParameters * Float.BYTES);
    }
    return out.array();
  }

  /**
   * Reads {@link #encodeState} output into {@code buffers} (each of length {@code numParameters}) and returns the
   * step count.
   */
  static long decodeState(byte[] state, String name, int numParameters, float[]... buffers) {
    requireNonNull(state, "state is null");
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(state))) {
      int magic = in.readInt();
      if (magic != MAGIC) {
        throw new IllegalArgumentException(
            String.format("Invalid optimizer state: magic 0x%08x (expected 0x%08x)", magic, MAGIC));
      }
      int version = in.readInt();
      if (version != VERSION) {
        throw new IllegalArgumentException(
            String.format("Unsupported optimizer state version: %d (supported: %d)", version, VERSION));
      }
      String stateName = in.readUTF();
      if (!stateName.equals(name)) {
        throw new IllegalArgumentException(
            String.format("Cannot import optimizer state: it is for '%s' (expected '%s')", stateName, name));
      }
      int n = in.readInt();
      if (n != numParameters) {
        throw new IllegalArgumentException(
            String.format(
                "Cannot import optimizer state: it has %d parameters (expected %d)", n, numParameters));
      }
      long steps = in.readLong();
      int count = in.readInt();
      if (count != buffers.length || steps < 0) {
        throw new IllegalArgumentException(
            String.format(
                "Invalid optimizer state: %d buffers, step %d (expected %d buffers, step >= 0)",
                count, steps, buffers.length));
      }
      // Decode everything before touching the optimizer's buffers, so a bad state leaves it unchanged.
      float[][] decoded = new float[count][numParameters];
      byte[] raw = new byte[numParameters * Float.BYTES];
      for (float[] buffer : decoded) {
        in.readFully(raw);
        ByteBuffer.wrap(raw).asFloatBuffer().get(buffer);
      }
      if (in.read() != -1) {
        throw new IllegalArgumentException("Invalid optimizer state: trailing bytes");
      }
      for (int i = 0; i < count; i++) {
        System.arraycopy(decoded[i], 0, buffers[i], 0, numParameters);
      }
      return steps;
    } catch (IOException e) {
      throw new IllegalArgumentException("Invalid optimizer state: truncated (" + e + ")", e);
    }
  }

  /** @throws IllegalArgumentException unless both arrays have {@code numParameters} elements */
  static void checkLengths(int numParameters, float[] params, float[] grads) {
    if (params.length != numParameters) {
      throw new IllegalArgumentException(
          "Invalid parameter vector length: " + params.length + " (expected " + numParameters + ")");
    }
    if (grads.length != numParameters) {
      throw new IllegalArgumentException(
          "Invalid gradient vector length: " + grads.length + " (expected " + numParameters + ")");
    }
  }
}
