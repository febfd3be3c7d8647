package dev.stagecraft.jobs.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.cli.CliIT.Started;
import dev.stagecraft.jobs.testing.Ledgers;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Whole CLI processes contending for one run, as users and schedulers cause it: resumes started together, and a driver
 * paused (SIGSTOP: a long GC, a frozen VM) until another process took its run over.
 */
class LeaseCliIT {
  /** Short leases, so a takeover takes seconds. */
  static final List<String> LEASE = List.of("-Dspark.stagecraft.lease.staleAfter=3s",
      "-Dspark.stagecraft.lease.heartbeat=500ms");

  @TempDir Path dir;

  /** One step that sleeps in its task for {@code seconds}, so that processes overlap while it runs. */
  void workflow(int seconds) throws Exception {
    Files.writeString(dir.resolve("wf.yaml"), """
        name: slow
        params: { fail: "false" }
        steps:
          - id: slow
            kind: sql
            sql: >-
              SELECT id, reflect('java.lang.Thread', 'sleep', CAST(%d AS BIGINT)) AS slept FROM range(3)
              WHERE assert_true(${fail} = false) IS NULL
        """.formatted(seconds * 1000));
  }

  @Test
  void resumesStartedTogetherRunTheStepOnce() throws Exception {
    workflow(6);
    String ws = dir.resolve("ws").toString();
    CliIT.Result failed = CliIT.java(true, dir, "run", "wf.yaml", "--run-id", "r1", "--workspace", ws, "--set",
        "fail=true");
    assertThat(failed.code()).as(failed.err()).isEqualTo(1);

    List<Started> resumes = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      resumes.add(CliIT.start(true, dir, LEASE, "run", "wf.yaml", "--run-id", "r1", "--workspace", ws, "--resume",
          "--set", "fail=false")); // a run keeps its params: the fix is given again
    }
    int ran = 0;
    for (Started s : resumes) {
      assertThat(s.process().waitFor(180, TimeUnit.SECONDS)).isTrue();
      String out = Files.readString(s.out());
      String err = Files.readString(s.err());
      if (out.contains("▶ slow (sql) started")) {
        ran++;
        assertThat(s.process().exitValue()).as(err).isZero();
      } else if (s.process().exitValue() == 2) {
        assertThat(err).contains("stagecraft: Cannot start run 'r1': it is live in another process: pid ");
      } else {
        assertThat(s.process().exitValue()).as("came after the run ended: nothing left to run: " + err).isZero();
        assertThat(out).contains("0 step(s) to run");
      }
    }
    assertThat(ran).as("the step ran in exactly one process").isEqualTo(1);
    JsonNode slow = Ledgers.newest(dir.resolve("ws"), "r1").path("steps").path("slow");
    assertThat(slow.path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(slow.path("attempts").asInt()).as("the failed attempt and one resumed").isEqualTo(2);
  }

  @Test
  void aPausedDriverIsFencedWhenItWakesAndDeletesNothing() throws Exception {
    workflow(10);
    String ws = dir.resolve("ws").toString();
    Started old = CliIT.start(true, dir, LEASE, "run", "wf.yaml", "--run-id", "p1", "--workspace", ws);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    while (!Files.readString(old.out()).contains("▶ slow (sql) started") && System.nanoTime() < deadline) {
      assertThat(old.process().isAlive()).as(Files.readString(old.err())).isTrue();
      Thread.sleep(100);
    }
    signal("STOP", old.process());
    Started next;
    try {
      Thread.sleep(3_000); // its last heartbeat looks old now; the new driver watches it stay unchanged for 3 s more
      next = CliIT.start(true, dir, LEASE, "run", "wf.yaml", "--run-id", "p1", "--workspace", ws, "--resume");
      deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
      while (!Files.readString(next.out()).contains("▶ slow (sql) started") && System.nanoTime() < deadline) {
        assertThat(next.process().isAlive()).as(Files.readString(next.err())).isTrue();
        Thread.sleep(100);
      }
    } finally {
      signal("CONT", old.process()); // wakes while the new driver runs the step
    }
    assertThat(old.process().waitFor(120, TimeUnit.SECONDS)).isTrue();
    String oldErr = Files.readString(old.err());
    assertThat(old.process().exitValue()).as(oldErr).isEqualTo(4);
    assertThat(oldErr).contains("stagecraft: Lost the run lease (epoch 1) to another process: epoch 2, pid "
        + next.process().pid());
    assertThat(Files.readString(old.out())).doesNotContain("✔ slow succeeded");

    assertThat(next.process().waitFor(120, TimeUnit.SECONDS)).isTrue();
    assertThat(next.process().exitValue()).as(Files.readString(next.err())).isZero();
    JsonNode slow = Ledgers.newest(dir.resolve("ws"), "p1").path("steps").path("slow");
    assertThat(slow.path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(slow.path("attempts").asInt()).isEqualTo(2);
    Path output = Path.of(java.net.URI.create(slow.path("outputs").path("output").path("uri").asText()));
    assertThat(output).as("the new driver's output, whole").isDirectory();
    assertThat(output.resolve("_SUCCESS")).exists();
    assertThat(Ledgers.newest(dir.resolve("ws"), "p1").path("fences").path("run").asInt()).isEqualTo(2);
  }

  private static void signal(String name, Process p) throws Exception {
    assertThat(new ProcessBuilder("kill", "-" + name, Long.toString(p.pid())).start().waitFor()).isZero();
  }
}
