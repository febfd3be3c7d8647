package dev.stagecraft.training.checkpoint;

import static java.util.Objects.requireNonNull;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes checkpoints in the background: the training thread only hands over a snapshot (copies of its arrays), and
 * one writer thread serialises and uploads it through a {@link CheckpointStore} while training continues. At most one
 * upload is in flight; a snapshot that comes while one is still running waits for it (logged); deferring instead
 * is the {@link Checkpointer}'s choice. A failed upload is logged and counted; it never leaves a checkpoint that a resume
 * would take (the store writes the manifest last) and never stops training.
 */
public final class CheckpointWriter implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(CheckpointWriter.class);

  /** What the writer did, for metrics. */
  public record Stats(int written, int skipped, int failed, long bytes, double writeSeconds, double waitSeconds,
      long lastWrittenStep) implements java.io.Serializable {}

  private final CheckpointStore store;
  private final String fingerprint;
  private final ExecutorService thread;
  private Future<?> inFlight;
  private long inFlightStep = -1;
  // Written by the writer thread, read after it finished (Future.get / executor termination order the accesses).
  private volatile int written;
  private volatile int failed;
  private volatile long bytes;
  private volatile long writeNanos;
  private volatile long lastWrittenStep = -1;
  private int skipped;
  private long waitNanos;

  public CheckpointWriter(CheckpointStore store, String fingerprint) {
    this.store = requireNonNull(store, "store is null");
    this.fingerprint = requireNonNull(fingerprint, "fingerprint is null");
    this.thread = Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "stagecraft-checkpoint-writer");
      t.setDaemon(true);
      return t;
    });
  }

  /** Whether an upload is still running. */
  public boolean busy() {
    return inFlight != null && !inFlight.isDone();
  }

  /** Records that the checkpoint due at {@code step} is deferred because an upload is still running. */
  public void noteSkipped(long step) {
    skipped++;
    LOG.info("Checkpoint due at step {} deferred: the one of step {} is still being written (when_busy: skip)",
        step, inFlightStep);
  }

  /** Queues {@code state} for writing; if the previous upload is still running, waits for it first (logged). */
  public void submit(TrainingState state) {
    requireNonNull(state, "state is null");
    if (busy()) {
      LOG.info("Checkpoint at step {} waits for the one of step {} to be written (when_busy: wait)",
          state.globalStep(), inFlightStep);
      long t = System.nanoTime();
      awaitInFlight();
      waitNanos += System.nanoTime() - t;
    }
    inFlightStep = state.globalStep();
    inFlight = thread.submit(() -> write(state));
  }

  private void write(TrainingState state) {
    long t = System.nanoTime();
    try {
      var files = state.toFiles();
      Path dir = store.write(state.globalStep(), state.epoch(), fingerprint, files);
      long size = files.values().stream().mapToLong(b -> b.length).sum();
      writeNanos += System.nanoTime() - t;
      bytes += size;
      written++;
      lastWrittenStep = state.globalStep();
      LOG.info("Checkpoint {} written ({} bytes in {} ms)", dir, size, (System.nanoTime() - t) / 1_000_000);
    } catch (Exception e) {
      failed++;
      LOG.warn("Cannot write the checkpoint of step {} under {}: {}", state.globalStep(), store.root(),
          e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage().lines().findFirst().orElse(""));
    }
  }

  private void awaitInFlight() {
    try {
      inFlight.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (ExecutionException e) {
      LOG.warn("Checkpoint writer failed", e.getCause()); // write() catches everything; cannot happen
    }
  }

  /** The last checkpoint handed over (written, being written or failed), or -1. */
  public long lastSubmittedStep() {
    return inFlightStep;
  }

  /** Waits for the upload in flight, if any. */
  public void flush() {
    if (inFlight != null) {
      awaitInFlight();
    }
  }

  public Stats stats() {
    return new Stats(written, skipped, failed, bytes, writeNanos / 1e9, waitNanos / 1e9, lastWrittenStep);
  }

  /** Waits for the upload in flight and stops the writer thread. */
  @Override
  public void close() {
    flush();
    thread.shutdown();
    try {
      if (!thread.awaitTermination(60, TimeUnit.SECONDS)) {
        LOG.warn("The checkpoint writer did not stop within 60 s");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
