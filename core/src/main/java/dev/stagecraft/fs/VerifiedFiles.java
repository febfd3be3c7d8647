package dev.stagecraft.fs;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The data files of a folder whose manifest lists each file's size and SHA-256 (model bundles, checkpoints): write
 * them (before the manifest, which the caller publishes last with {@link AtomicFiles#write}), and read one back only
 * if it matches its entry. No rename is involved, so the protocol holds on object stores.
 */
public final class VerifiedFiles {
  private static final int CHUNK = 64 * 1024;

  private VerifiedFiles() {}

  /** A file's size and SHA-256 as a manifest records them. */
  public record Entry(long bytes, String sha256) {}

  /** A file is missing or does not match its entry; the message names it and is meant for the user. */
  public static final class Mismatch extends Exception {
    private static final long serialVersionUID = 1L;

    Mismatch(String message) {
      super(message);
    }
  }

  /**
   * Writes each file into {@code dir} and returns its entry, in the given order. The SHA-256 is computed in the same
   * pass as the write. On the local file system the files are written directly (as {@link AtomicFiles} does), not
   * through Hadoop's checksummed file system: the manifest's checksums already cover every byte, and the {@code .crc}
   * sidecars would more than double the CPU time of a write (a checkpoint writer competes with training for it).
   */
  public static Map<String, Entry> write(FileSystem fs, Path dir, Map<String, byte[]> files) throws IOException {
    boolean local = AtomicFiles.scheme(fs).equals("file");
    java.nio.file.Path localDir = local ? java.nio.file.Path.of(fs.makeQualified(dir).toUri()) : null;
    if (local) {
      Files.createDirectories(localDir);
    }
    Map<String, Entry> entries = new LinkedHashMap<>();
    for (Map.Entry<String, byte[]> f : files.entrySet()) {
      String name = f.getKey();
      if (name.isEmpty() || name.contains("/") || name.startsWith(".")) {
        throw new IllegalArgumentException("Invalid file name: '" + name + "' (expected a plain name)");
      }
      MessageDigest digest = sha256();
      byte[] data = f.getValue();
      if (local) {
        // A sidecar left by an earlier write of this name through Hadoop would no longer match.
        Files.deleteIfExists(localDir.resolve("." + name + ".crc"));
        try (OutputStream out = Files.newOutputStream(localDir.resolve(name))) {
          write(data, digest, out);
        }
      } else {
        try (FSDataOutputStream out = fs.create(new Path(dir, name), true)) {
          write(data, digest, out);
        }
      }
      entries.put(name, new Entry(data.length, HexFormat.of().formatHex(digest.digest())));
    }
    return entries;
  }

  private static void write(byte[] data, MessageDigest digest, OutputStream out) throws IOException {
    for (int off = 0; off < data.length; off += CHUNK) {
      int n = Math.min(CHUNK, data.length - off);
      digest.update(data, off, n); // while the chunk is still in the CPU's cache
      out.write(data, off, n);
    }
  }

  /**
   * The content of {@code dir/name} if it matches {@code expected}.
   *
   * @throws Mismatch "file 'x' is missing" or "file 'x' does not match its manifest (…)"
   */
  public static byte[] read(FileSystem fs, Path dir, String name, Entry expected) throws IOException, Mismatch {
    byte[] content;
    try (InputStream in = fs.open(new Path(dir, name))) {
      content = in.readAllBytes();
    } catch (FileNotFoundException e) {
      throw new Mismatch("file '" + name + "' is missing");
    }
    if (content.length != expected.bytes() || !sha256(content).equals(expected.sha256())) {
      throw new Mismatch("file '" + name + "' does not match its manifest (" + content.length + " bytes, expected "
          + expected.bytes() + " with SHA-256 " + expected.sha256() + ")");
    }
    return content;
  }

  public static String sha256(byte[] data) {
    return HexFormat.of().formatHex(sha256().digest(data));
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e); // every JDK has SHA-256
    }
  }
}
