package dev.stagecraft.jobs.ledger;

import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.UnaryOperator;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads and updates run ledgers.
 *
 * <p>A ledger is a folder of {@link Generations} ({@code runs/RUN-ID/ledger/0000000042.json}); the newest readable
 * one is the run's state. An update reads the newest, applies the change and creates the next generation
 * exclusively: two writers that read the same generation cannot both write the next, and the loser reads again and
 * re-applies its change. So concurrent writers (several {@code step} processes of one run) never lose an update,
 * without a lock that a dead process could leave behind, and a writer whose lease was taken over is refused
 * ({@link Fence}) in the same atomic step. The last {@value #KEPT} to 2 × {@value #KEPT} generations are kept whole
 * (older ones are emptied, their names kept): a generation that cannot be read (a torn file after a power loss on a
 * store that lost it) is reported and the previous one used.
 */
public final class LedgerStore {
  private static final Logger LOG = LoggerFactory.getLogger(LedgerStore.class);
  /** Generations kept behind the newest: the copies a torn newest one falls back to. */
  static final int KEPT = 10;

  private static final Duration CONTENTION_LIMIT = Duration.ofSeconds(90);
  /** Torn generations already reported, so each is logged once per process. */
  private static final Map<Path, Boolean> REPORTED = new ConcurrentHashMap<>();

  private final Workspace workspace;
  private final Fence fence;

  public LedgerStore(Workspace workspace) {
    this(workspace, Fence.NONE);
  }

  private LedgerStore(Workspace workspace, Fence fence) {
    this.workspace = workspace;
    this.fence = fence;
  }

  /** This store, with every update checked against {@code fence}. */
  public LedgerStore fenced(Fence f) {
    return new LedgerStore(workspace, f);
  }

  /** The fence updates are checked against. */
  public Fence fence() {
    return fence;
  }

  public Optional<RunLedger> read(String runId) {
    try {
      return newest(runId).map(Version::ledger);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read ledger %s: %s", workspace.ledgerDir(runId), e.getMessage());
    }
  }

  /**
   * Applies {@code change} to the current ledger (null if there is none yet) and writes the result as the next
   * generation. {@code change} may run more than once (when another writer got in first), each time on the newest
   * ledger, so it must only compute.
   *
   * @return the ledger as written
   * @throws LeaseLostException if this store's fence has been overtaken by a newer lease holder
   */
  public RunLedger update(String runId, UnaryOperator<RunLedger> change) {
    Path dir = workspace.ledgerDir(runId);
    FileSystem fs = workspace.ledgerFs();
    long deadline = System.nanoTime() + CONTENTION_LIMIT.toNanos();
    try {
      for (int attempt = 1; ; attempt++) {
        Optional<Version> current = newest(runId);
        RunLedger base = current.map(Version::ledger).orElse(null);
        fence.check(base, fs);
        RunLedger next = fence.stamp(change.apply(base));
        long n = current.map(Version::highest).orElse(0L) + 1;
        if (Generations.create(fs, dir, n, Json.MAPPER.writeValueAsBytes(next))) {
          if (n % KEPT == 0) {
            Generations.prune(fs, dir, n - 2 * KEPT, n - KEPT);
          }
          return next;
        }
        if (System.nanoTime() > deadline) {
          throw new StagecraftException(ErrorCategory.EXTERNAL, "Cannot update the ledger " + dir + ": other "
              + "writers got in first " + attempt + " times in " + CONTENTION_LIMIT.toSeconds() + "s");
        }
        Thread.sleep(ThreadLocalRandom.current().nextLong(1, 5L << Math.min(attempt, 6)));
      }
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot write ledger %s: %s", dir, e.getMessage());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw StagecraftException.external(e, "Interrupted while updating the ledger %s", dir);
    }
  }

  /**
   * The newest readable generation, and the highest number present (a torn generation still counts, so the next
   * write never reuses its name).
   */
  private record Version(RunLedger ledger, long highest) {}

  private Optional<Version> newest(String runId) throws IOException {
    Path dir = workspace.ledgerDir(runId);
    FileSystem fs = workspace.ledgerFs();
    List<Long> generations = Generations.list(fs, dir);
    for (long n : generations) {
      Path p = Generations.path(dir, n);
      Optional<byte[]> bytes = AtomicFiles.read(fs, p);
      if (bytes.isEmpty() || Generations.isPruned(bytes.get())) {
        continue; // emptied after the listing: a newer one exists
      }
      try {
        if (bytes.get().length == 0) {
          throw new IOException("0 bytes");
        }
        return Optional.of(new Version(Json.MAPPER.readValue(bytes.get(), RunLedger.class), generations.get(0)));
      } catch (IOException e) {
        if (REPORTED.putIfAbsent(p, true) == null) {
          LOG.warn("Ledger generation {} of run '{}' is torn ({}: {}); using the one before it", p, runId,
              bytes.get().length + " bytes", e.getMessage().lines().findFirst().orElse(""));
        }
      }
    }
    if (!generations.isEmpty()) {
      throw StagecraftException.user("Cannot read the ledger of run '%s': none of its %d generations in %s is a "
          + "Stagecraft ledger", runId, generations.size(), dir);
    }
    return Optional.empty();
  }
}
