package dev.stagecraft.jobs.ledger;

import com.fasterxml.jackson.core.JacksonException;
import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.spi.StagecraftException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.time.Duration;
import java.util.Optional;
import java.util.function.UnaryOperator;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads and updates run ledgers. Every update is a read-modify-write of the whole file under a short-lived lock file
 * ({@code runs/RUN-ID/ledger.lock}), published with {@link AtomicFiles#write}: readers never see a half-written ledger
 * and concurrent writers (the steps of one run driven by several {@code step} processes) never lose an update.
 */
public final class LedgerStore {
  private static final Logger LOG = LoggerFactory.getLogger(LedgerStore.class);
  /** A ledger lock older than this was left by a process that died while holding it. */
  private static final Duration LOCK_STALE = Duration.ofSeconds(30);
  private static final Duration LOCK_WAIT = Duration.ofSeconds(90);

  private final Workspace workspace;

  public LedgerStore(Workspace workspace) {
    this.workspace = workspace;
  }

  public Optional<RunLedger> read(String runId) {
    Path path = workspace.ledger(runId);
    try {
      Optional<byte[]> bytes = AtomicFiles.read(workspace.fs(), path);
      if (bytes.isEmpty()) {
        return Optional.empty();
      }
      return Optional.of(Json.MAPPER.readValue(bytes.get(), RunLedger.class));
    } catch (JacksonException e) {
      throw StagecraftException.user("Cannot read ledger %s: not a Stagecraft ledger (%s)", path, e.getOriginalMessage());
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read ledger %s: %s", path, e.getMessage());
    }
  }

  /**
   * Applies {@code change} to the current ledger (null if there is none yet) and writes the result atomically.
   *
   * @return the ledger as written
   */
  public RunLedger update(String runId, UnaryOperator<RunLedger> change) {
    synchronized (this) {
      Path lock = new Path(workspace.runDir(runId), "ledger.lock");
      lock(lock);
      try {
        RunLedger next = change.apply(read(runId).orElse(null));
        AtomicFiles.write(workspace.fs(), workspace.ledger(runId), Json.MAPPER.writeValueAsBytes(next));
        return next;
      } catch (IOException e) {
        throw StagecraftException.external(e, "Cannot write ledger %s: %s", workspace.ledger(runId), e.getMessage());
      } finally {
        unlock(lock);
      }
    }
  }

  private void lock(Path lock) {
    long deadline = System.nanoTime() + LOCK_WAIT.toNanos();
    long sleep = 5;
    try {
      while (true) {
        if (AtomicFiles.createExclusive(workspace.fs(), lock, new byte[0])) {
          return;
        }
        FileStatus st = statusOrNull(lock);
        if (st != null && System.currentTimeMillis() - st.getModificationTime() > LOCK_STALE.toMillis()) {
          LOG.warn("Removing a stale ledger lock {} (left by a process that died while updating the ledger)", lock);
          workspace.fs().delete(lock, false);
          continue;
        }
        if (System.nanoTime() > deadline) {
          throw StagecraftException.external(null, "Cannot update the ledger: the lock %s was held for over %ss", lock,
              LOCK_WAIT.toSeconds());
        }
        Thread.sleep(sleep);
        sleep = Math.min(sleep * 2, 200);
      }
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot lock the ledger %s: %s", lock, e.getMessage());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw StagecraftException.external(e, "Interrupted while waiting for the ledger lock %s", lock);
    }
  }

  private void unlock(Path lock) {
    try {
      workspace.fs().delete(lock, false);
    } catch (IOException e) {
      LOG.warn("Cannot remove the ledger lock {} (it expires after {}s): {}", lock, LOCK_STALE.toSeconds(), e.toString());
    }
  }

  private FileStatus statusOrNull(Path p) throws IOException {
    try {
      return workspace.fs().getFileStatus(p);
    } catch (FileNotFoundException e) {
      return null;
    }
  }
}
