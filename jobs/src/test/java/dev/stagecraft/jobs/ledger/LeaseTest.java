package dev.stagecraft.jobs.ledger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.fs.AtomicFiles;
import java.net.InetAddress;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Leases on the local file system, one JVM; races of real processes on every store are in {@code LeaseRaceIT}. */
class LeaseTest {
  static final Duration HOUR = Duration.ofHours(1);

  @TempDir java.nio.file.Path tmp;

  FileSystem fs() throws Exception {
    return FileSystem.getLocal(new Configuration()).getRaw();
  }

  Path dir(String name) {
    return new Path(tmp.toUri().toString(), name);
  }

  /** Epoch 1 of a lease as a process with {@code pid} on {@code machine} would have left it. */
  static Lease.Holder holder(long pid, String machine, long since, long heartbeat, long beats) throws Exception {
    return new Lease.Holder("t", 1, InetAddress.getLocalHost().getHostName(), machine, pid, "u", "run wf.yaml", since,
        heartbeat, beats, false);
  }

  void write(Path dir, Lease.Holder h) throws Exception {
    AtomicFiles.write(fs(), Generations.path(dir, h.epoch()), Json.MAPPER.writeValueAsBytes(h));
  }

  @Test
  void aHolderWhoseProcessIsGoneFromThisMachineIsTakenOverAtOnceWithTheNextEpoch() throws Exception {
    Process p = new ProcessBuilder("true").start();
    p.waitFor();
    Path gone = dir("gone");
    long now = System.currentTimeMillis();
    write(gone, holder(p.pid(), Lease.machine(), now, now, 3));
    assertThat(Lease.liveHolder(fs(), gone, HOUR)).isEmpty();
    try (Lease taken = Lease.acquire(fs(), gone, "run", "run 'x'", "resume", HOUR, HOUR)) {
      assertThat(taken.epoch()).isEqualTo(2);
      assertThat(taken.lost()).isFalse();
    }

    // A pid reused by a process that started after the lease was taken is not its holder.
    Path reused = dir("reused");
    write(reused, holder(ProcessHandle.current().pid(), Lease.machine(), 0, now, 3));
    assertThat(Lease.liveHolder(fs(), reused, HOUR)).isEmpty();
  }

  @Test
  void aLiveHolderIsRefusedAndAHolderInAnotherPidNamespaceIsNeverJudgedByItsPid() throws Exception {
    long now = System.currentTimeMillis();
    Path mine = dir("mine");
    write(mine, holder(ProcessHandle.current().pid(), Lease.machine(), now, now, 0));
    assertThatThrownBy(() -> Lease.acquire(fs(), mine, "run", "run 'y'", "again", HOUR, HOUR))
        .hasMessageStartingWith("Cannot start run 'y': it is live in another process: pid "
            + ProcessHandle.current().pid());

    // Same host name, but a container (another PID namespace): its pid says nothing here, even a dead one.
    Process p = new ProcessBuilder("true").start();
    p.waitFor();
    Path container = dir("container");
    write(container, holder(p.pid(), Lease.machine() + "-other-namespace", now, now, 0));
    assertThat(Lease.liveHolder(fs(), container, HOUR)).isPresent();
    assertThatThrownBy(() -> Lease.acquire(fs(), container, "run", "run 'z'", "again", HOUR, HOUR))
        .hasMessageContaining("is live in another process");
  }

  @Test
  void aRecordThatLooksOldIsWatchedAndTakenOnlyIfItStaysUnchanged() throws Exception {
    Duration stale = Duration.ofMillis(1500);
    // Its heartbeat time is an hour old by this clock, but its holder still writes: another machine's slow clock.
    Path skewed = dir("skewed");
    long anHourAgo = System.currentTimeMillis() - HOUR.toMillis();
    write(skewed, holder(1, "elsewhere", anHourAgo, anHourAgo, 0));
    AtomicBoolean beating = new AtomicBoolean(true);
    CompletableFuture<Void> beats = CompletableFuture.runAsync(() -> {
      for (long n = 1; beating.get(); n++) {
        try {
          write(skewed, holder(1, "elsewhere", anHourAgo, anHourAgo + n, n));
          Thread.sleep(200);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      }
    });
    try {
      assertThatThrownBy(() -> Lease.acquire(fs(), skewed, "run", "run 's'", "resume", stale, HOUR))
          .hasMessageContaining("is live in another process");
    } finally {
      beating.set(false);
      beats.get();
    }
    // Once it stops, the record stays unchanged for `stale` and the next epoch is taken.
    long watching = System.nanoTime();
    try (Lease taken = Lease.acquire(fs(), skewed, "run", "run 's'", "resume", stale, HOUR)) {
      assertThat(taken.epoch()).isEqualTo(2);
      assertThat(Duration.ofNanos(System.nanoTime() - watching)).isGreaterThanOrEqualTo(stale);
    }
  }

  @Test
  void aHolderThatStopsBeatingLosesTheLeaseAndLearnsWhoTookIt() throws Exception {
    Duration stale = Duration.ofMillis(800);
    Path run = dir("run");
    // Heartbeat once an hour: to everyone else this holder looks paused.
    Lease paused = Lease.acquire(fs(), run, "run", "run 'p'", "first", stale, HOUR);
    Thread.sleep(stale.toMillis() + 100);
    try (Lease next = Lease.acquire(fs(), run, "run", "run 'p'", "second", stale, Duration.ofMillis(100))) {
      assertThat(next.epoch()).isEqualTo(paused.epoch() + 1);
      assertThatThrownBy(paused::checkHeld).isInstanceOf(LeaseLostException.class)
          .hasMessageContaining("Lost the run lease (epoch 1) to another process: epoch 2, pid "
              + ProcessHandle.current().pid())
          .hasMessageContaining("`second`");
      paused.close(); // must not release the new holder's epoch
      assertThat(Lease.liveHolder(fs(), run, stale)).map(Lease.Holder::command).contains("second");
    }
    // Released by its holder: the next process takes epoch 3 at once.
    assertThat(Lease.liveHolder(fs(), run, stale)).isEmpty();
    try (Lease third = Lease.acquire(fs(), run, "run", "run 'p'", "third", HOUR, HOUR)) {
      assertThat(third.epoch()).isEqualTo(3);
    }
  }

  Optional<Long> retire(Path step, Duration stale) throws Exception {
    return Lease.retire(fs(), step, "Cannot start run 'r': its step 's' is live in another process", stale);
  }

  @Test
  void retiringAStaleLeaseCreatesTheNextEpochReleasedAndLeavesALiveOneAlone() throws Exception {
    Duration stale = Duration.ofMillis(600);
    Path step = dir("step");
    assertThat(retire(step, stale)).as("never taken").isEmpty();
    Lease old = Lease.acquire(fs(), step, "step:s", "step 's'", "step", stale, HOUR);
    assertThatThrownBy(() -> retire(step, stale))
        .hasMessageStartingWith("Cannot start run 'r': its step 's' is live in another process: pid ");
    Thread.sleep(stale.toMillis() + 100);
    assertThat(retire(step, stale)).contains(2L);
    assertThatThrownBy(old::checkHeld).isInstanceOf(LeaseLostException.class);
    assertThat(retire(step, stale)).as("already released").isEmpty();
    old.close();
  }
}
