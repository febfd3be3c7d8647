package dev.stagecraft.jobs.ledger;

import dev.stagecraft.fs.AtomicFiles;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * A folder of numbered files, {@code 0000000001.json}, {@code 0000000002.json}, …, each created exclusively
 * ({@link AtomicFiles#createExclusive}): of any number of processes that try to create generation N, exactly one
 * succeeds. That one operation is what the ledger (each update a new generation: a compare-and-set on the whole
 * ledger) and the leases (each holder a new generation: its epoch) are built on.
 */
final class Generations {
  private static final Pattern NAME = Pattern.compile("(\\d{10})\\.json");

  private Generations() {}

  static Path path(Path dir, long generation) {
    return new Path(dir, String.format("%010d.json", generation));
  }

  /** The generations present, newest first (empty if the folder does not exist). */
  static List<Long> list(FileSystem fs, Path dir) throws IOException {
    List<Long> found = new ArrayList<>();
    try {
      for (FileStatus s : fs.listStatus(dir)) {
        Matcher m = NAME.matcher(s.getPath().getName());
        if (m.matches() && s.isFile()) {
          found.add(Long.parseLong(m.group(1)));
        }
      }
    } catch (FileNotFoundException e) {
      return List.of();
    }
    found.sort(Comparator.reverseOrder());
    return found;
  }

  /** Creates generation {@code n} with {@code data}; false if it exists (another process created it first). */
  static boolean create(FileSystem fs, Path dir, long n, byte[] data) throws IOException {
    return AtomicFiles.createExclusive(fs, path(dir, n), data);
  }

  static boolean exists(FileSystem fs, Path dir, long n) throws IOException {
    return fs.exists(path(dir, n));
  }

  /**
   * Empties generations {@code from} (inclusive) to {@code to} (exclusive), keeping their names: a deleted name could be
   * created again by a writer that read an old generation and was paused (the ABA problem), and its write would then
   * "succeed" behind newer generations and be lost. A failure leaves them whole (they are never read again).
   */
  static void prune(FileSystem fs, Path dir, long from, long to) {
    for (long n = Math.max(1, from); n < to; n++) {
      try {
        AtomicFiles.write(fs, path(dir, n), PRUNED);
      } catch (IOException ignored) {
        // Old generations only take space.
      }
    }
  }

  /** What a pruned generation holds. */
  static final byte[] PRUNED = "{\"pruned\":true}".getBytes(java.nio.charset.StandardCharsets.UTF_8);

  static boolean isPruned(byte[] content) {
    return java.util.Arrays.equals(content, PRUNED);
  }
}
