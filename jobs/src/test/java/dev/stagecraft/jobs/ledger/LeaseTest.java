package dev.stagecraft.jobs.ledger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.fs.AtomicFiles;
import java.net.InetAddress;
import java.time.Duration;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LeaseTest {
  @TempDir java.nio.file.Path tmp;

  /** A lease file as a process of this host with {@code pid} would have left it, heartbeat just now. */
  Path leaseOf(long pid, long since) throws Exception {
    FileSystem fs = FileSystem.getLocal(new Configuration()).getRaw();
    Path path = new Path(tmp.toUri().toString(), "lease-" + pid);
    long now = System.currentTimeMillis();
    Lease.Holder h = new Lease.Holder("t", InetAddress.getLocalHost().getHostName(), pid, "u", "run wf.yaml", since,
        now);
    AtomicFiles.write(fs, path, Json.MAPPER.writeValueAsBytes(h));
    return path;
  }

  @Test
  void aHolderWhoseProcessIsGoneFromThisHostIsDeadAtOnce() throws Exception {
    FileSystem fs = FileSystem.getLocal(new Configuration()).getRaw();
    Process p = new ProcessBuilder("true").start();
    p.waitFor();
    Path gone = leaseOf(p.pid(), System.currentTimeMillis());
    assertThat(Lease.liveHolder(fs, gone, Duration.ofHours(1))).isEmpty();
    try (Lease taken = Lease.acquire(fs, gone, "run 'x'", "resume", Duration.ofHours(1), Duration.ofHours(1))) {
      assertThat(taken.lost()).isFalse();
    }

    // This very process holds it: live, and a second acquire is refused.
    Path mine = leaseOf(ProcessHandle.current().pid(), System.currentTimeMillis());
    assertThat(Lease.liveHolder(fs, mine, Duration.ofHours(1))).isPresent();
    assertThatThrownBy(() -> Lease.acquire(fs, mine, "run 'y'", "again", Duration.ofHours(1), Duration.ofHours(1)))
        .hasMessageStartingWith("Cannot start run 'y': it is live in another process: pid "
            + ProcessHandle.current().pid());

    // A pid reused by a process that started after the lease was taken is not its holder.
    Path reused = leaseOf(ProcessHandle.current().pid(), 0);
    assertThat(Lease.liveHolder(fs, reused, Duration.ofHours(1))).isEmpty();
  }
}
