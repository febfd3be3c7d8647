package dev.stagecraft.training.model;

import static java.util.Objects.requireNonNull;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;

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

  static byte[] encodeState(String name, int numParameters, long steps, float[]... buffers) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(32 + buffers.length * numParameters * Float.BYTES);
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.writeInt(MAGIC);
      out.writeInt(VERSION);
      out.writeUTF(name);
      out.writeInt(numParameters);
      out.writeLong(steps);
      out.writeInt(buffers.length);
      byte[] raw = new byte[numParameters * Float.BYTES];
      for (float[] buffer : buffers) {
        ByteBuffer.wrap(raw).asFloatBuffer().put(buffer);
        out.write(raw);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return bytes.toByteArray();
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
