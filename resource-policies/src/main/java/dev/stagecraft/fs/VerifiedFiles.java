package dev.stagecraft.fs;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
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

  /** Writes each file into {@code dir} and returns its entry, in the given order. */
  public static Map<String, Entry> write(FileSystem fs, Path dir, Map<String, byte[]> files) throws IOException {
    Map<String, Entry> entries = new LinkedHashMap<>();
    for (Map.Entry<String, byte[]> f : files.entrySet()) {
      String name = f.getKey();
      if (name.isEmpty() || name.contains("/") || name.startsWith(".")) {
        throw new IllegalArgumentException("Invalid file name: '" + name + "' (expected a plain name)");
      }
      try (FSDataOutputStream out = fs.create(new Path(dir, name), true)) {
        out.write(f.getValue());
      }
      entries.put(name, new Entry(f.getValue().length, sha256(f.getValue())));
    }
    return entries;
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
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
