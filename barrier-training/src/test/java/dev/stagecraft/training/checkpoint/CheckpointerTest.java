package dev.stagecraft.training.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.testing.LogCapture;
import java.io.IOException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.FilterFileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointerTest {
  @TempDir java.nio.file.Path tmp;

  /**
   * The local file system, where deleting blocks until the test opens the gate: a write starts by clearing its
   * folder (data files on {@code file:} are written directly, not through {@code create}).
   */
  static final class GatedFileSystem extends FilterFileSystem {
    volatile CountDownLatch gate = new CountDownLatch(0);

    GatedFileSystem() throws IOException {
      super(FileSystem.getLocal(new Configuration()).getRaw());
    }

    @Override
    public boolean delete(Path f, boolean recursive) throws IOException {
      try {
        gate.await(30, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        throw new java.io.InterruptedIOException();
      }
      return super.delete(f, recursive);
    }
  }

  static TrainingState state(long step) {
    return new TrainingState(step, 1, step, step * 10, step * 0.1, new float[] {step, 2, 3}, () -> new byte[] {1, 2},
        new double[] {step, 1, 0.5});
  }

  @Test
  void savesEveryNStepsInTheBackgroundAndAlwaysTheLastStep() throws Exception {
    Path root = new Path(tmp.toUri().toString(), "ck");
    CheckpointStore store = new CheckpointStore(FileSystem.getLocal(new Configuration()).getRaw(), root, 2);
    CheckpointPolicy policy = new CheckpointPolicy(10, 0, 2, CheckpointPolicy.WhenBusy.WAIT,
        CheckpointPolicy.Resume.LATEST);
    int[] snapshots = {0};
    try (Checkpointer c = new Checkpointer(policy, new CheckpointWriter(store, "fp"), 0)) {
      for (long step = 1; step <= 25; step++) {
        long s = step;
        c.afterStep(step, () -> {
          snapshots[0]++;
          return state(s);
        });
      }
      c.end(25, () -> state(25));
      assertThat(snapshots[0]).as("a copy only when saving: steps 10 and 20").isEqualTo(2);
      assertThat(c.stats().written()).isEqualTo(3);
      assertThat(c.stats().lastWrittenStep()).isEqualTo(25);
    }
    CheckpointStore.Loaded latest = store.latestValid("fp").orElseThrow();
    assertThat(TrainingState.fromFiles(latest.files()).parameters()).containsExactly(25f, 2f, 3f);
    assertThat(new java.io.File(root.toUri()).list()).containsExactlyInAnyOrder("step-20", "step-25");

    // Resumed from the last step, nothing runs: the complete checkpoint is not rewritten (that would delete it first).
    try (Checkpointer c = new Checkpointer(policy, new CheckpointWriter(store, "fp"), 25)) {
      c.end(25, () -> {
        throw new AssertionError("no snapshot expected");
      });
      assertThat(c.stats().written()).isZero();
    }
    assertThat(store.latestValid("fp").orElseThrow().manifest().globalStep()).isEqualTo(25);
  }

  @Test
  void whileAnUploadRunsSkipDefersWithoutCopyingAndWaitWaits() throws Exception {
    GatedFileSystem fs = new GatedFileSystem();
    Path root = new Path(tmp.toUri().toString(), "slow");
    CheckpointStore store = new CheckpointStore(fs, root, 5);
    CheckpointPolicy skip = new CheckpointPolicy(2, 0, 5, CheckpointPolicy.WhenBusy.SKIP,
        CheckpointPolicy.Resume.LATEST);
    try (LogCapture log = new LogCapture(CheckpointWriter.class);
        Checkpointer c = new Checkpointer(skip, new CheckpointWriter(store, "fp"), 0)) {
      fs.gate = new CountDownLatch(1); // uploads hang until released
      int[] copies = {0};
      for (long step = 1; step <= 7; step++) {
        long s = step;
        c.afterStep(step, () -> {
          copies[0]++;
          return state(s);
        });
      }
      // Step 2 was handed over and hangs; 4 was due and deferred (once, logged); 5, 6 and 7 add nothing.
      assertThat(copies[0]).isEqualTo(1);
      assertThat(c.stats().skipped()).isEqualTo(1);
      assertThat(log.lines()).anyMatch(l -> l.contains("Checkpoint due at step 4 deferred: the one of step 2 is "
          + "still being written (when_busy: skip)"));
      fs.gate.countDown();
      org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(10))
          .until(() -> c.stats().written() == 1);
      c.afterStep(8, () -> state(8)); // free again: the deferred save happens now
      c.end(8, () -> state(8));
      assertThat(c.stats().written()).isEqualTo(2);
      assertThat(store.latestValid("fp").orElseThrow().manifest().globalStep()).isEqualTo(8);
    }

    CheckpointPolicy wait = new CheckpointPolicy(2, 0, 5, CheckpointPolicy.WhenBusy.WAIT,
        CheckpointPolicy.Resume.LATEST);
    try (LogCapture log = new LogCapture(CheckpointWriter.class);
        Checkpointer c = new Checkpointer(wait, new CheckpointWriter(store, "fp"), 8)) {
      fs.gate = new CountDownLatch(1);
      c.afterStep(10, () -> state(10));
      Thread release = new Thread(() -> {
        try {
          Thread.sleep(300);
        } catch (InterruptedException e) {
          return;
        }
        fs.gate.countDown();
      });
      release.start();
      long t = System.nanoTime();
      c.afterStep(12, () -> state(12)); // waits for step 10's upload
      assertThat((System.nanoTime() - t) / 1e6).isGreaterThan(200);
      c.end(12, () -> state(12));
      assertThat(c.stats().written()).isEqualTo(2);
      assertThat(c.stats().waitSeconds()).isGreaterThan(0.2);
      assertThat(log.lines()).anyMatch(l -> l.contains("Checkpoint at step 12 waits for the one of step 10 to be "
          + "written (when_busy: wait)"));
    }
  }

  @Test
  void aFailedUploadIsLoggedAndCountedAndLeavesNoCheckpoint() throws Exception {
    java.nio.file.Path blocker = tmp.resolve("file-not-dir");
    java.nio.file.Files.writeString(blocker, "x");
    Path root = new Path(blocker.toUri().toString(), "ck"); // a folder under a file: every write fails
    CheckpointStore store = new CheckpointStore(FileSystem.getLocal(new Configuration()).getRaw(), root, 2);
    CheckpointPolicy policy = new CheckpointPolicy(1, 0, 2, CheckpointPolicy.WhenBusy.WAIT,
        CheckpointPolicy.Resume.LATEST);
    try (LogCapture log = new LogCapture(CheckpointWriter.class);
        Checkpointer c = new Checkpointer(policy, new CheckpointWriter(store, "fp"), 0)) {
      c.afterStep(1, () -> state(1));
      c.end(1, () -> state(1));
      assertThat(c.stats().failed()).isEqualTo(1);
      assertThat(c.stats().written()).isZero();
      assertThat(log.lines()).anyMatch(l -> l.contains("Cannot write the checkpoint of step 1 under "));
    }
  }
}
