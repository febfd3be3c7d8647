package dev.stagecraft.inference.bundle;

import static java.util.Objects.requireNonNull;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.util.zip.CRC32;

/**
 * Stagecraft's own file format for a flat parameter vector, readable without DJL (for inference, or to inspect a
 * checkpoint). Big-endian, as {@link DataOutputStream} writes:
 *
 * <pre>
 *   int    magic   0x53435057 ("SCPW")
 *   int    version 1
 *   int    count   number of floats
 *   float  values[count]
 *   long   CRC-32 of the count float values' bytes
 * </pre>
 *
 * <p>The layout of the vector (which float is which weight) is the bundle's ({@link BundleNetwork}): layer by layer,
 * weight (row-major, {@code [outputs × inputs]}) then bias.
 */
public final class ParameterFile {
  public static final int MAGIC = 0x53435057;
  public static final int VERSION = 1;

  private static final int CHUNK_FLOATS = 16 * 1024;

  private ParameterFile() {}

  /** Writes {@code values} to {@code out} and flushes it; does not close it. */
  public static void write(float[] values, OutputStream out) throws IOException {
    requireNonNull(values, "values is null");
    DataOutputStream data = new DataOutputStream(requireNonNull(out, "out is null"));
    data.writeInt(MAGIC);
    data.writeInt(VERSION);
    data.writeInt(values.length);
    CRC32 crc = new CRC32();
    byte[] chunk = new byte[Math.min(values.length, CHUNK_FLOATS) * Float.BYTES];
    for (int off = 0; off < values.length; off += CHUNK_FLOATS) {
      int n = Math.min(CHUNK_FLOATS, values.length - off);
      ByteBuffer.wrap(chunk).asFloatBuffer().put(values, off, n);
      data.write(chunk, 0, n * Float.BYTES);
      crc.update(chunk, 0, n * Float.BYTES);
    }
    data.writeLong(crc.getValue());
    data.flush();
  }

  /**
   * Reads a vector written by {@link #write}; reads exactly the file's bytes and does not close {@code in}.
   *
   * @throws IOException if the stream ends early, or its magic, version or checksum is wrong
   */
  public static float[] read(InputStream in) throws IOException {
    DataInputStream data = new DataInputStream(requireNonNull(in, "in is null"));
    int magic = data.readInt();
    if (magic != MAGIC) {
      throw new IOException(
          String.format("Invalid parameter file: magic 0x%08x (expected 0x%08x)", magic, MAGIC));
    }
    int version = data.readInt();
    if (version != VERSION) {
      throw new IOException(
          String.format("Unsupported parameter file version: %d (supported: %d)", version, VERSION));
    }
    int count = data.readInt();
    if (count < 0) {
      throw new IOException("Invalid parameter file: count " + count + " (expected >= 0)");
    }
    float[] values = new float[count];
    CRC32 crc = new CRC32();
    byte[] chunk = new byte[Math.min(count, CHUNK_FLOATS) * Float.BYTES];
    for (int off = 0; off < count; off += CHUNK_FLOATS) {
      int n = Math.min(CHUNK_FLOATS, count - off);
      data.readFully(chunk, 0, n * Float.BYTES);
      crc.update(chunk, 0, n * Float.BYTES);
      ByteBuffer.wrap(chunk, 0, n * Float.BYTES).asFloatBuffer().get(values, off, n);
    }
    long expected = data.readLong();
    if (expected != crc.getValue()) {
      throw new IOException(
          String.format(
              "Invalid parameter file: CRC-32 0x%08x of %d values (expected 0x%08x)",
              crc.getValue(), count, expected));
    }
    return values;
  }
}
