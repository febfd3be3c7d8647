package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the two ways of running an attempt ({@link InProcessAttempt}, {@link LaunchedAttempt}) share: the folders an
 * attempt leaves in the workspace, its duration, and the one-line error a failed attempt records.
 */
final class Attempts {
  private static final Logger LOG = LoggerFactory.getLogger(Attempts.class);

  private Attempts() {}

  /** Deletes the attempt's intermediate data ({@link Workspace#scratchDir}); a failure to is only logged. */
  static void deleteScratch(Workspace ws, String runId, String step, int attempt) {
    Path scratch = ws.scratchDir(runId, step, attempt);
    try {
      deleteIfExists(ws, scratch);
    } catch (RuntimeException e) {
      LOG.warn("Cannot delete the intermediate data of step '{}' attempt {} ({}): {}", step, attempt, scratch,
          e.toString());
    }
  }

  /**
   * Deletes the step's attempt folders older than {@code attempt-KEEP}, the one the ledger now names. Newer ones are
   * kept: they belong to a process that started the step again after this commit (a resume), not to this one.
   */
  static void removeEarlierAttempts(Workspace ws, String runId, String step, int keep) {
    try {
      if (!ws.fs().exists(ws.stepDir(runId, step))) {
        return; // the step wrote only outside its folder (e.g. a model bundle under models/)
      }
      FileStatus[] children = ws.fs().listStatus(ws.stepDir(runId, step), p -> p.getName().startsWith("attempt-"));
      for (FileStatus c : children) {
        String n = c.getPath().getName().substring("attempt-".length());
        if (n.matches("\\d{1,9}") && Integer.parseInt(n) < keep) {
          ws.fs().delete(c.getPath(), true);
        }
      }
    } catch (IOException e) {
      LOG.warn("Cannot remove earlier attempts of step '{}' (harmless: the ledger names only attempt-{}): {}", step,
          keep, e.toString());
    }
  }

  /** The Spark job group of a step's attempts: what cancels them. */
  static String jobGroup(String runId, String step) {
    return "stagecraft/" + runId + "/" + step;
  }

  static void deleteIfExists(Workspace ws, Path dir) {
    try {
      ws.fs().delete(dir, true);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot delete %s: %s", dir, e.getMessage());
    }
  }

  /** The first line of the most useful message in {@code t}'s chain, at most 1000 characters. */
  static String oneLine(Throwable t) {
    Throwable best = StagecraftException.find(t).<Throwable>map(e -> e).orElse(t);
    String m = best.getMessage();
    m = m == null || m.isBlank() ? best.getClass().getName() : StagecraftException.firstLine(m);
    return m.length() > 1000 ? m.substring(0, 1000) + "…" : m;
  }

  /** Seconds since {@code startNanos} ({@link System#nanoTime}), to the millisecond. */
  static double seconds(long startNanos) {
    return Math.round((System.nanoTime() - startNanos) / 1e6) / 1000.0;
  }
}
