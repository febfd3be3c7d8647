package dev.stagecraft.fs;

import java.io.ByteArrayOutputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileContext;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Options;
import org.apache.hadoop.fs.Path;

/**
 * Small files that readers see whole or not at all, on any Hadoop FileSystem.
 *
 * <p>Three kinds of store, three ways to publish a file atomically:
 *
 * <ul>
 *   <li>{@code file:} — java.nio: write a temporary sibling, then {@code rename(2)} over the target (atomic on POSIX).
 *       Hadoop's own local rename with overwrite deletes the target first, which is not atomic.
 *   <li>HDFS ({@code hdfs:}, {@code viewfs:}) — write a temporary sibling, then {@link FileContext#rename} with
 *       {@code OVERWRITE}, which the NameNode performs atomically. ({@code FileSystem#rename} refuses to overwrite.)
 *   <li>object stores ({@code s3a:} and every other scheme) — rename is a copy and a delete there, so no rename at all:
 *       the object is written in one stream and becomes visible whole when the stream closes (a single PUT, or a
 *       multipart upload completed in one request).
 * </ul>
 *
 * <p>Exclusive creation ({@link #createExclusive}) is atomic on the first two kinds (a hard link, a rename without
 * overwrite). On object stores it is check-then-write: two writers racing within one request's time can both win.
 * Callers that need mutual exclusion there add a heartbeat and a re-read (see the run lease in {@code jobs}).
 */
public final class AtomicFiles {
  private static final Set<String> RENAME_ATOMIC_SCHEMES = Set.of("hdfs", "viewfs");
  private static final int CHANGED_READ_ATTEMPTS = 5;

  private AtomicFiles() {}

  /** Writes {@code data} to {@code path}, replacing any earlier content; a reader sees the old or the new file. */
  public static void write(FileSystem fs, Path path, byte[] data) throws IOException {
    Path target = fs.makeQualified(path);
    String scheme = scheme(fs);
    if (scheme.equals("file")) {
      java.nio.file.Path file = java.nio.file.Path.of(target.toUri());
      Files.createDirectories(file.getParent());
      java.nio.file.Path tmp = file.resolveSibling(tempName(file.getFileName().toString()));
      try {
        Files.write(tmp, data);
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } finally {
        Files.deleteIfExists(tmp);
      }
    } else if (RENAME_ATOMIC_SCHEMES.contains(scheme)) {
      Path tmp = new Path(target.getParent(), tempName(target.getName()));
      writeStream(fs, tmp, data, false);
      try {
        FileContext.getFileContext(fs.getUri(), fs.getConf()).rename(tmp, target, Options.Rename.OVERWRITE);
      } finally {
        deleteQuietly(fs, tmp);
      }
    } else {
      writeStream(fs, target, data, true);
    }
  }

  /**
   * Creates {@code path} with {@code data} only if it does not exist yet.
   *
   * @return true if this call created the file, false if it already existed
   */
  public static boolean createExclusive(FileSystem fs, Path path, byte[] data) throws IOException {
    Path target = fs.makeQualified(path);
    String scheme = scheme(fs);
    if (scheme.equals("file")) {
      java.nio.file.Path file = java.nio.file.Path.of(target.toUri());
      Files.createDirectories(file.getParent());
      java.nio.file.Path tmp = file.resolveSibling(tempName(file.getFileName().toString()));
      try {
        Files.write(tmp, data);
        Files.createLink(file, tmp); // link(2) fails if the name exists: atomic test-and-create
        return true;
      } catch (FileAlreadyExistsException e) {
        return false;
      } finally {
        Files.deleteIfExists(tmp);
      }
    } else if (RENAME_ATOMIC_SCHEMES.contains(scheme)) {
      Path tmp = new Path(target.getParent(), tempName(target.getName()));
      writeStream(fs, tmp, data, false);
      try {
        FileContext.getFileContext(fs.getUri(), fs.getConf()).rename(tmp, target, Options.Rename.NONE);
        return true;
      } catch (org.apache.hadoop.fs.FileAlreadyExistsException e) {
        return false;
      } finally {
        deleteQuietly(fs, tmp);
      }
    } else {
      if (fs.exists(target)) {
        return false;
      }
      try {
        writeStream(fs, target, data, false);
        return true;
      } catch (org.apache.hadoop.fs.FileAlreadyExistsException e) {
        return false;
      }
    }
  }

  /**
   * The whole content of {@code path}, or empty if it does not exist.
   *
   * <p>A file replaced while it is being read makes some stores fail the read rather than mix two versions (see
   * {@link #replacedWhileReading}). The new file is whole, so the read starts again (a few times at most).
   */
  public static Optional<byte[]> read(FileSystem fs, Path path) throws IOException {
    for (int attempt = 1; ; attempt++) {
      try (InputStream in = fs.open(path)) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        in.transferTo(out);
        return Optional.of(out.toByteArray());
      } catch (FileNotFoundException | NoSuchFileException e) {
        return Optional.empty();
      } catch (IOException e) {
        if (!replacedWhileReading(e) || attempt >= CHANGED_READ_ATTEMPTS) {
          throw e;
        }
      }
    }
  }

  /** The store reports that the file changed under an open stream. Both signals were seen in AtomicFilesTest. */
  private static boolean replacedWhileReading(IOException e) {
    // S3A opens with a HEAD and reads with a GET that must match the HEAD's ETag. By class name: hadoop-aws is not on
    // every classpath that loads this class.
    if (e.getClass().getName().equals("org.apache.hadoop.fs.s3a.RemoteFileChangedException")) {
      return true;
    }
    // HDFS: after a rename over the file its old blocks go; the reader asks the NameNode for the name's blocks again
    // and gets the new file's. DFSInputStream says so only in the message of a plain IOException.
    String m = e.getMessage();
    return m != null && m.startsWith("Blocklist for ") && m.endsWith(" has changed!");
  }

  /** True if this store publishes files by rename (and so leaves temporary siblings while writing). */
  public static boolean renameIsAtomic(FileSystem fs) {
    String scheme = scheme(fs);
    return scheme.equals("file") || RENAME_ATOMIC_SCHEMES.contains(scheme);
  }

  private static void writeStream(FileSystem fs, Path path, byte[] data, boolean overwrite) throws IOException {
    try (FSDataOutputStream out = fs.create(path, overwrite)) {
      out.write(data);
    }
  }

  private static void deleteQuietly(FileSystem fs, Path path) {
    try {
      fs.delete(path, false);
    } catch (IOException ignored) {
      // A leftover temporary file is harmless: its name starts with '.' and readers never open it.
    }
  }

  private static String tempName(String name) {
    return "." + name + "." + UUID.randomUUID() + ".tmp";
  }

  static String scheme(FileSystem fs) {
    String s = fs.getUri().getScheme();
    return s == null ? "file" : s.toLowerCase(Locale.ROOT);
  }
}
