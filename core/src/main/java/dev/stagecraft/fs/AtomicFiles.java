package dev.stagecraft.fs;

import java.io.ByteArrayOutputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
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
 * <p>Exclusive creation ({@link #createExclusive}) is atomic on all three: a hard link ({@code link(2)} fails if the
 * name exists), a rename without overwrite, and on S3 a PUT with {@code If-None-Match: *} ({@link S3ConditionalPut}).
 * Other stores, and S3 servers that do not implement that condition, cannot create exclusively: there it throws
 * {@link ExclusiveCreateUnsupported}, and {@link #exclusiveCreateUnsupported} says so before anything is written.
 *
 * <p>On {@code file:} a file counts as written once its data and its directory entry are on disk ({@code fsync} of
 * the file, then of the folder): after a power loss a reader finds the old file or the new one, never an empty one.
 */
public final class AtomicFiles {
  private static final Set<String> RENAME_ATOMIC_SCHEMES = Set.of("hdfs", "viewfs");
  private static final int CHANGED_READ_ATTEMPTS = 8;
  /** The longest pause before reading a replaced file again (see {@link #read}). */
  private static final long CHANGED_READ_MAX_PAUSE_MS = 320;
  /** Why a store cannot create exclusively (empty: it can), by file system URI; S3 is asked once per bucket. */
  private static final Map<URI, Optional<String>> EXCLUSIVE = new ConcurrentHashMap<>();

  /** This store cannot create a file only if it is absent; the message says why. */
  public static final class ExclusiveCreateUnsupported extends IOException {
    public ExclusiveCreateUnsupported(String message) {
      super(message);
    }
  }

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
        writeDurably(tmp, data);
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        syncDirectory(file.getParent());
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
   * @throws ExclusiveCreateUnsupported if the store cannot (see {@link #exclusiveCreateUnsupported})
   */
  public static boolean createExclusive(FileSystem fs, Path path, byte[] data) throws IOException {
    Path target = fs.makeQualified(path);
    String scheme = scheme(fs);
    if (scheme.equals("file")) {
      java.nio.file.Path file = java.nio.file.Path.of(target.toUri());
      Files.createDirectories(file.getParent());
      java.nio.file.Path tmp = file.resolveSibling(tempName(file.getFileName().toString()));
      try {
        writeDurably(tmp, data);
        Files.createLink(file, tmp); // link(2) fails if the name exists: atomic test-and-create
        syncDirectory(file.getParent());
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
    } else if (isS3a(fs)) {
      return S3ConditionalPut.create(fs, target, data);
    } else {
      throw new ExclusiveCreateUnsupported(notExclusive(scheme));
    }
  }

  /**
   * Why {@link #createExclusive} cannot work on the store holding {@code dir}, or empty if it can. On S3 the server is
   * asked once per bucket and process: a conditional PUT of a probe object under {@code dir} twice, where the second
   * must be refused (a server that ignores the condition lets both through; one that lacks it answers 501).
   */
  public static Optional<String> exclusiveCreateUnsupported(FileSystem fs, Path dir) throws IOException {
    String scheme = scheme(fs);
    if (scheme.equals("file") || RENAME_ATOMIC_SCHEMES.contains(scheme)) {
      return Optional.empty();
    }
    if (!isS3a(fs)) {
      return Optional.of(notExclusive(scheme));
    }
    URI key = fs.getUri();
    Optional<String> known = EXCLUSIVE.get(key);
    if (known != null) {
      return known;
    }
    Path probe = new Path(fs.makeQualified(dir), ".stagecraft-probe-" + UUID.randomUUID());
    Optional<String> answer;
    try {
      boolean first = S3ConditionalPut.create(fs, probe, new byte[0]);
      boolean second = S3ConditionalPut.create(fs, probe, new byte[0]);
      answer = first && !second ? Optional.empty()
          : Optional.of("the S3 server ignores If-None-Match (a second conditional PUT of one key succeeded)");
    } catch (ExclusiveCreateUnsupported e) {
      answer = Optional.of(e.getMessage());
    } finally {
      deleteQuietly(fs, probe);
    }
    EXCLUSIVE.put(key, answer);
    return answer;
  }

  private static String notExclusive(String scheme) {
    return "a " + scheme + ": store offers no exclusive create that Stagecraft can use (only file:, hdfs:, viewfs: and "
        + "s3a: with conditional writes do)";
  }

  /**
   * The whole content of {@code path}, or empty if it does not exist.
   *
   * <p>A file replaced while it is being read makes some stores fail the read rather than mix two versions (see
   * {@link #replacedWhileReading}). The new file is whole, so the read starts again (a few times at most), after a
   * pause that doubles each time (20 ms to {@value #CHANGED_READ_MAX_PAUSE_MS} ms, jittered; about 1.3 s in all at
   * most): a reader whose open and read are further apart than the writer's replacements would otherwise lose every
   * attempt to a burst of them. Hadoop 3.5's default S3A stream reads on another thread after its HEAD, and in
   * AtomicFilesTest lost five attempts in a row within 0.3 s without the pause.
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
        if (!replacedWhileReading(fs, e) || attempt >= CHANGED_READ_ATTEMPTS) {
          throw e;
        }
        pauseBeforeRereading(attempt, e);
      }
    }
  }

  private static void pauseBeforeRereading(int attempt, IOException cause) throws InterruptedIOException {
    long pause = Math.min(CHANGED_READ_MAX_PAUSE_MS, 10L << attempt);
    try {
      Thread.sleep(ThreadLocalRandom.current().nextLong(pause / 2, pause + 1));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      InterruptedIOException stop = new InterruptedIOException("interrupted while reading a replaced file again");
      stop.initCause(cause);
      throw stop;
    }
  }

  /** The store reports that the file changed under an open stream. Each signal was seen in AtomicFilesTest. */
  private static boolean replacedWhileReading(FileSystem fs, IOException e) {
    // S3A opens with a HEAD and reads with a GET that must match the HEAD's ETag. By class name: hadoop-aws is not on
    // every classpath that loads this class. Hadoop 3.5's default S3A stream says it differently (S3ReadRace).
    if (e.getClass().getName().equals("org.apache.hadoop.fs.s3a.RemoteFileChangedException")
        || isS3a(fs) && S3ReadRace.objectReplaced(e)) {
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

  /** Writes a new file and forces its data to disk before it is published. */
  private static void writeDurably(java.nio.file.Path file, byte[] data) throws IOException {
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
      ByteBuffer buf = ByteBuffer.wrap(data);
      while (buf.hasRemaining()) {
        ch.write(buf);
      }
      ch.force(true);
    }
  }

  /** Forces a folder's entries (a rename or link just made in it) to disk. */
  private static void syncDirectory(java.nio.file.Path dir) throws IOException {
    try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
      ch.force(true);
    } catch (IOException e) {
      // Some file systems cannot open or sync a folder (Linux allows both on its disk file systems). The data is
      // synced; only the entry may still be in the page cache.
      if (!Files.isDirectory(dir)) {
        throw e;
      }
    }
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

  /**
   * S3A, by class name: {@link S3ConditionalPut} and {@link S3ReadRace} refer to hadoop-aws and its AWS SDK, which are
   * not on every classpath, and a class whose code catches an SDK exception cannot even be loaded without the SDK. So
   * they are loaded only once this says the store is S3A.
   */
  static boolean isS3a(FileSystem fs) {
    return fs.getClass().getName().equals("org.apache.hadoop.fs.s3a.S3AFileSystem");
  }

  static String scheme(FileSystem fs) {
    String s = fs.getUri().getScheme();
    return s == null ? "file" : s.toLowerCase(Locale.ROOT);
  }
}
