package dev.stagecraft.training.checkpoint;

import static java.util.Objects.requireNonNull;

import java.io.IOException;
import java.time.Duration;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes checkpoints in the background: the training thread only hands over a snapshot (copies of its arrays), and a
 * writer thread serialises and uploads it through a {@link CheckpointStore} while training continues. At most one
 * upload is in flight; a snapshot that comes while one is still running waits for it (logged); deferring instead
 * is the {@link Checkpointer}'s choice. A failed upload is logged and counted; it never leaves a checkpoint that a resume
 * would take (the store writes the manifest last) and never stops training.
 *
 * <p>Every upload has a deadline, the write timeout: a store that went silent (a partitioned HDFS or S3 host) can hold
 * a Hadoop client call for many minutes of retries, and training must not wait for it. An upload not complete by its
 * deadline is abandoned the moment the training thread looks at it (a due checkpoint, or the end): counted, logged
 * with the store and step, reported as progress, its thread interrupted and left behind, and the next checkpoint goes
 * to a new thread as usual. An abandoned upload never publishes its checkpoint: its manifest is refused from the
 * deadline on; a manifest whose write was already under way at the deadline is deleted as soon as that write returns;
 * and the next upload deletes the abandoned step's folder before writing its own. Only the previous complete checkpoint
 * remains for a resume.
 */
public final class CheckpointWriter implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(CheckpointWriter.class);

  /** The start of the progress line of a failed or abandoned write. */
  public static final String EVENT_PREFIX = "checkpoint of step ";

  /**
   * What the writer did, for metrics; {@code failed} includes the {@code abandoned} uploads; {@code longestWaitSeconds}
   * is the longest the training thread waited for one upload (when_busy: wait, or the end).
   */
  public record Stats(int written, int skipped, int failed, int abandoned, long bytes, double writeSeconds,
      double waitSeconds, double longestWaitSeconds, long lastWrittenStep) implements java.io.Serializable {}

  // An upload's life: the writer thread moves it RUNNING → COMMITTING (writing the manifest) → COMMITTED; the training
  // thread abandons it (RUNNING or COMMITTING → ABANDONED) at its deadline. Whoever changes the state first wins.
  private static final int RUNNING = 0;
  private static final int COMMITTING = 1;
  private static final int COMMITTED = 2;
  private static final int ABANDONED = 3;

  private final CheckpointStore store;
  private final String fingerprint;
  private final Duration timeout;
  private final Consumer<String> events;
  private Upload inFlight;
  private long inFlightStep = -1;
  // Written by writer threads (an abandoned one may still run beside the current one), read by the training thread.
  private final AtomicInteger written = new AtomicInteger();
  private final AtomicInteger failed = new AtomicInteger();
  private final AtomicInteger abandoned = new AtomicInteger();
  private final AtomicLong bytes = new AtomicLong();
  private final AtomicLong writeNanos = new AtomicLong();
  private final AtomicLong lastWrittenStep = new AtomicLong(-1);
  /** Steps whose upload was abandoned and whose folder is not deleted yet. */
  private final Set<Long> toDiscard = ConcurrentHashMap.newKeySet();
  /** Progress lines from writer threads, handed to {@code events} on the training thread. */
  private final Queue<String> pending = new ConcurrentLinkedQueue<>();
  private int skipped;
  private long waitNanos;
  private long longestWaitNanos;

  /** A writer with the default write timeout that reports nothing but logs. */
  public CheckpointWriter(CheckpointStore store, String fingerprint) {
    this(store, fingerprint, Duration.ofSeconds((long) CheckpointPolicy.DEFAULT_WRITE_TIMEOUT_SECONDS), line -> {});
  }

  /**
   * @param timeout how long an upload may take before it is abandoned
   * @param events receives, on the training thread, a line for each failed or abandoned upload (progress)
   */
  public CheckpointWriter(CheckpointStore store, String fingerprint, Duration timeout, Consumer<String> events) {
    this.store = requireNonNull(store, "store is null");
    this.fingerprint = requireNonNull(fingerprint, "fingerprint is null");
    this.timeout = requireNonNull(timeout, "timeout is null");
    this.events = requireNonNull(events, "events is null");
    if (timeout.isNegative() || timeout.isZero()) {
      throw new IllegalArgumentException("Invalid checkpoint write timeout: " + timeout + " (expected above 0)");
    }
  }

  /** One upload: its snapshot, deadline, state and thread. */
  private final class Upload implements CheckpointStore.Commit {
    final TrainingState state;
    final long deadline;
    final AtomicInteger phase = new AtomicInteger(RUNNING);
    final CompletableFuture<Void> done = new CompletableFuture<>();
    final Thread thread;

    Upload(TrainingState state) {
      this.state = state;
      this.deadline = System.nanoTime() + timeout.toNanos();
      this.thread = new Thread(this::run, "stagecraft-checkpoint-writer-" + state.globalStep());
      thread.setDaemon(true);
    }

    private void run() {
      try {
        write(this);
      } finally {
        done.complete(null);
      }
    }

    @Override
    public void begin() throws IOException {
      if (!phase.compareAndSet(RUNNING, COMMITTING)) {
        throw new IOException("abandoned at its deadline; its manifest is not written");
      }
    }

    @Override
    public void end() throws IOException {
      if (!phase.compareAndSet(COMMITTING, COMMITTED)) {
        throw new IOException("abandoned while its manifest was being written; the checkpoint is deleted again");
      }
    }
  }

  /** Whether an upload is still running (one past its deadline is abandoned first, and then is not). */
  public boolean busy() {
    report();
    if (inFlight == null || inFlight.done.isDone()) {
      return false;
    }
    if (System.nanoTime() - inFlight.deadline >= 0) {
      giveUp(inFlight);
      return false;
    }
    return true;
  }

  /** Records that the checkpoint due at {@code step} is deferred because an upload is still running. */
  public void noteSkipped(long step) {
    skipped++;
    LOG.info("Checkpoint due at step {} deferred: the one of step {} is still being written (when_busy: skip)",
        step, inFlightStep);
  }

  /**
   * Queues {@code state} for writing; if the previous upload is still running, waits for it first (logged), at most
   * until its deadline.
   */
  public void submit(TrainingState state) {
    requireNonNull(state, "state is null");
    if (busy()) {
      LOG.info("Checkpoint at step {} waits for the one of step {} to be written (when_busy: wait)",
          state.globalStep(), inFlightStep);
      waitNanos += awaitInFlight();
    }
    inFlightStep = state.globalStep();
    inFlight = new Upload(state);
    inFlight.thread.start();
  }

  private void write(Upload u) {
    long t = System.nanoTime();
    long step = u.state.globalStep();
    try {
      for (Long old : toDiscard) {
        store.discard(old); // whatever an abandoned upload left or still leaves there can never look complete
        toDiscard.remove(old);
      }
      var files = u.state.toFiles();
      long size = files.values().stream().mapToLong(b -> b.length).sum();
      Path dir = store.write(step, u.state.epoch(), fingerprint, files, u);
      writeNanos.addAndGet(System.nanoTime() - t);
      bytes.addAndGet(size);
      written.incrementAndGet();
      lastWrittenStep.accumulateAndGet(step, Math::max);
      LOG.info("Checkpoint {} written ({} bytes in {} ms)", dir, size, (System.nanoTime() - t) / 1_000_000);
    } catch (Exception e) {
      String why = e.getMessage() == null ? e.getClass().getSimpleName()
          : e.getMessage().lines().findFirst().orElse("");
      if (u.phase.get() == ABANDONED) {
        LOG.info("The abandoned write of the checkpoint of step {} under {} ended: {}", step, store.root(), why);
        return;
      }
      failed.incrementAndGet();
      LOG.warn("Cannot write the checkpoint of step {} under {}: {}", step, store.root(), why);
      pending.add(EVENT_PREFIX + step + " failed (" + why + "); training continues");
    }
  }

  /** Waits for the upload in flight until it ends or its deadline passes (then it is abandoned); nanoseconds waited. */
  private long awaitInFlight() {
    Upload u = inFlight;
    long t = System.nanoTime();
    try {
      u.done.get(Math.max(0, u.deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
    } catch (TimeoutException e) {
      giveUp(u);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (ExecutionException e) {
      LOG.warn("Checkpoint writer failed", e.getCause()); // write() catches everything; cannot happen
    }
    long waited = System.nanoTime() - t;
    longestWaitNanos = Math.max(longestWaitNanos, waited);
    report();
    return waited;
  }

  /**
   * The upload passed its deadline: abandoned unless its manifest is already written (then only retention of older
   * checkpoints is still running, which may finish in the background). Either way training stops waiting for it.
   */
  private void giveUp(Upload u) {
    long step = u.state.globalStep();
    if (u.phase.compareAndSet(RUNNING, ABANDONED) || u.phase.compareAndSet(COMMITTING, ABANDONED)) {
      abandoned.incrementAndGet();
      failed.incrementAndGet();
      toDiscard.add(step);
      u.thread.interrupt();
      LOG.warn("Checkpoint of step {} abandoned: not written within {} s (write_timeout_seconds) under {}; training "
          + "continues, and the newest complete checkpoint is still the one of step {}", step, seconds(),
          store.root(), lastWrittenStep.get() < 0 ? "(none)" : lastWrittenStep.get());
      pending.add(EVENT_PREFIX + step + " abandoned: not written within " + seconds()
          + " s (store " + store.root() + "); training continues");
    } else {
      LOG.info("Checkpoint of step {} is written; deleting older ones continues in the background", step);
    }
    inFlight = null;
  }

  /** The timeout in seconds as written: 10, or 0.25. */
  private String seconds() {
    return java.math.BigDecimal.valueOf(timeout.toMillis(), 3).stripTrailingZeros().toPlainString();
  }

  /** Hands the lines writer threads left to {@code events}, on the calling (training) thread. */
  private void report() {
    for (String line = pending.poll(); line != null; line = pending.poll()) {
      events.accept(line);
    }
  }

  /** The last checkpoint handed over (written, being written, failed or abandoned), or -1. */
  public long lastSubmittedStep() {
    return inFlightStep;
  }

  /** Waits for the upload in flight, if any, at most until its deadline. */
  public void flush() {
    if (inFlight != null) {
      awaitInFlight();
    } else {
      report();
    }
  }

  public Stats stats() {
    return new Stats(written.get(), skipped, failed.get(), abandoned.get(), bytes.get(), writeNanos.get() / 1e9,
        waitNanos / 1e9, longestWaitNanos / 1e9, lastWrittenStep.get());
  }

  /** Waits for the upload in flight (at most until its deadline); an abandoned writer thread is left to end alone. */
  @Override
  public void close() {
    flush();
  }
}
