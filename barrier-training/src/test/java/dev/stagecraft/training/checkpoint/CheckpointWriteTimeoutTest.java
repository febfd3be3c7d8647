package dev.stagecraft.training.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.testing.LogCapture;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Predicate;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.util.Progressable;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The write timeout without a network: a store that goes silent (a file's creation hangs, deaf to interrupts, until
 * the store heals) as a partitioned HDFS or S3 host does. Training waits at most the timeout; the abandoned write is
 * counted, logged and reported; it never publishes its checkpoint, even when the store heals and its hung call
 * completes; the next checkpoint is written as usual.
 */
class CheckpointWriteTimeoutTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(2);

  @TempDir java.nio.file.Path tmp;

  /**
   * The local disk under scheme {@code silent:} (so that checkpoint files go through {@link #create}, as on an object
   * store or HDFS): while {@link #silent} matches a path, creating it hangs until {@link #heal}.
   */
  static final class SilentStore extends RawLocalFileSystem {
    private volatile Predicate<Path> silent = p -> false;
    private volatile Predicate<Path> failing = p -> false;

    static SilentStore open() throws IOException {
      SilentStore fs = new SilentStore();
      fs.initialize(URI.create("silent:///"), new Configuration());
      return fs;
    }

    @Override
    public URI getUri() {
      return URI.create("silent:///");
    }

    @Override
    public String getScheme() {
      return "silent";
    }

    void silence(Predicate<Path> paths) {
      silent = paths;
    }

    /** Creating a path {@code paths} matches creates the file, then fails (as an interrupted permission call does). */
    void failAfterCreating(Predicate<Path> paths) {
      failing = paths;
    }

    synchronized void heal() {
      silent = p -> false;
      notifyAll();
    }

    @Override
    public FSDataOutputStream create(Path f, boolean overwrite, int bufferSize, short replication, long blockSize,
        Progressable progress) throws IOException {
      awaitHealed(f);
      FSDataOutputStream out = super.create(f, overwrite, bufferSize, replication, blockSize, progress);
      if (failing.test(f)) {
        out.close();
        throw new InterruptedIOException("interrupted while setting the permissions of " + f);
      }
      return out;
    }

    @Override
    public FSDataOutputStream create(Path f, FsPermission permission, boolean overwrite, int bufferSize,
        short replication, long blockSize, Progressable progress) throws IOException {
      awaitHealed(f);
      return super.create(f, permission, overwrite, bufferSize, replication, blockSize, progress);
    }

    private synchronized void awaitHealed(Path f) {
      while (silent.test(f)) {
        try {
          wait();
        } catch (InterruptedException e) {
          // A call in flight to a silent host does not end because its thread is interrupted.
        }
      }
      // Interrupted and healed at once, wait() may return normally with the thread still interrupted; the call then
      // carries on as its network call would, and the interrupt is gone as if it had been caught above.
      Thread.interrupted();
    }
  }

  static TrainingState state(long step) {
    return new TrainingState(step, 1, step, step * 10, step * 0.1, new float[] {step, 2, 3}, () -> new byte[] {1, 2},
        new double[] {step, 1, 0.5});
  }

  private static Predicate<Path> file(long step, String name) {
    return p -> p.getParent().getName().equals("step-" + step) && p.getName().contains(name);
  }

  @Test
  void aDataWriteStuckPastTheTimeoutIsAbandonedAndNeverPublishedEvenAfterTheStoreHeals() throws Exception {
    SilentStore fs = SilentStore.open();
    Path root = new Path("silent:" + tmp.toAbsolutePath() + "/ck");
    CheckpointStore store = new CheckpointStore(fs, root, 5);
    CheckpointPolicy policy = new CheckpointPolicy(1, 0, 5, CheckpointPolicy.WhenBusy.WAIT,
        CheckpointPolicy.Resume.LATEST, TIMEOUT.toSeconds());
    List<String> events = new CopyOnWriteArrayList<>();
    try (LogCapture log = new LogCapture(CheckpointWriter.class);
        Checkpointer c = new Checkpointer(policy, new CheckpointWriter(store, "fp", TIMEOUT, events::add), 0)) {
      c.afterStep(1, () -> state(1));
      Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> c.stats().written() == 1);

      fs.silence(file(2, TrainingState.PARAMETERS)); // the store goes silent while step 2's data is written
      c.afterStep(2, () -> state(2));
      long t = System.nanoTime();
      c.afterStep(3, () -> state(3)); // due while step 2 hangs: waits for it, at most until its deadline
      double waited = (System.nanoTime() - t) / 1e9;
      assertThat(waited).as("training waited about the write timeout, not longer")
          .isGreaterThan(TIMEOUT.toMillis() / 1e3 * 0.8).isLessThan(TIMEOUT.toSeconds() + 3);
      assertThat(c.stats().abandoned()).isEqualTo(1);
      assertThat(events).anyMatch(e -> e.startsWith("checkpoint of step 2 abandoned: not written within 2 s (store "));
      assertThat(log.lines()).anyMatch(l -> l.contains("Checkpoint of step 2 abandoned: not written within 2 s "
          + "(write_timeout_seconds) under " + root) && l.contains("the one of step 1"));

      fs.heal(); // step 2's hung call completes now; its manifest must never follow
      c.end(4, () -> state(4));
      awaitWriterGone(2);
      CheckpointWriter.Stats stats = c.stats();
      assertThat(stats.written()).as("steps 1, 3 and 4").isEqualTo(3);
      assertThat(stats.failed()).isEqualTo(1);
      assertThat(stats.abandoned()).isEqualTo(1);
      // How it ends depends on a race that both ways keep the manifest out: it reaches its manifest and is refused
      // ("abandoned at its deadline"), or the next write has already deleted step-2's folder under it and its next
      // file operation fails. Either way it is logged, and step-2 never gets a manifest (asserted below).
      assertThat(log.lines()).anyMatch(l -> l.contains("The abandoned write of the checkpoint of step 2 under "
          + root + " ended: "));
    }
    assertThat(fs.exists(new Path(root, "step-2/" + CheckpointStore.MANIFEST))).isFalse();
    assertThat(store.latestValid("fp").orElseThrow().manifest().globalStep()).isEqualTo(4);
  }

  @Test
  void aManifestLandingAfterTheTimeoutIsTakenBackAndTheEndWaitsAtMostTheTimeoutPerWrite() throws Exception {
    SilentStore fs = SilentStore.open();
    Path root = new Path("silent:" + tmp.toAbsolutePath() + "/ck");
    CheckpointStore store = new CheckpointStore(fs, root, 5);
    CheckpointPolicy policy = new CheckpointPolicy(1, 0, 5, CheckpointPolicy.WhenBusy.SKIP,
        CheckpointPolicy.Resume.LATEST, TIMEOUT.toSeconds());
    List<String> events = new CopyOnWriteArrayList<>();
    try (LogCapture log = new LogCapture(CheckpointWriter.class);
        Checkpointer c = new Checkpointer(policy, new CheckpointWriter(store, "fp", TIMEOUT, events::add), 0)) {
      c.afterStep(1, () -> state(1));
      Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> c.stats().written() == 1);

      // Silent from the manifest of step 2 on: its data is written, its commit hangs; so does everything after it.
      fs.silence(p -> p.getName().contains(CheckpointStore.MANIFEST) && !p.getParent().getName().equals("step-1"));
      c.afterStep(2, () -> state(2));
      c.afterStep(3, () -> state(3)); // when_busy: skip, deferred
      assertThat(c.stats().skipped()).isEqualTo(1);
      long t = System.nanoTime();
      c.end(3, () -> state(3)); // step 2 abandoned at its deadline, then step 3 at its own
      double waited = (System.nanoTime() - t) / 1e9;
      assertThat(waited).isLessThan(2 * TIMEOUT.toSeconds() + 3);
      assertThat(c.stats().abandoned()).isEqualTo(2);
      assertThat(events).hasSize(2).allMatch(e -> e.contains(" abandoned: not written within 2 s"));

      fs.heal(); // both manifests land now, after their writes were given up
      awaitWriterGone(2);
      awaitWriterGone(3);
      assertThat(log.lines()).anyMatch(l -> l.contains("The abandoned write of the checkpoint of step 2 under "
          + root + " ended: abandoned while its manifest was being written; the checkpoint is deleted again"));
    }
    for (long step : new long[] {2, 3}) {
      assertThat(fs.exists(new Path(root, "step-" + step + "/" + CheckpointStore.MANIFEST))).as("step %d", step)
          .isFalse();
    }
    assertThat(store.latestValid("fp").orElseThrow().manifest().globalStep()).as("the previous checkpoint")
        .isEqualTo(1);
  }

  @Test
  void aManifestWhoseWriteFailsPartWayIsTakenBack() throws Exception {
    SilentStore fs = SilentStore.open();
    Path root = new Path("silent:" + tmp.toAbsolutePath() + "/ck");
    CheckpointStore store = new CheckpointStore(fs, root, 5);
    store.write(1, 1, "fp", state(1).toFiles());
    fs.failAfterCreating(p -> p.getName().equals(CheckpointStore.MANIFEST));

    assertThatThrownBy(() -> store.write(2, 1, "fp", state(2).toFiles()))
        .isInstanceOf(InterruptedIOException.class);
    assertThat(fs.exists(new Path(root, "step-2/" + CheckpointStore.MANIFEST))).isFalse();
    assertThat(store.latestValid("fp").orElseThrow().manifest().globalStep()).isEqualTo(1);
  }

  /** Waits until the writer thread of {@code step} (abandoned, its call released) has ended. */
  private static void awaitWriterGone(long step) {
    String name = "stagecraft-checkpoint-writer-" + step;
    Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> Thread.getAllStackTraces().keySet().stream()
        .noneMatch(t -> t.getName().equals(name) && t.isAlive()));
  }
}
