package dev.stagecraft.jobs.network;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.testing.HostNetwork.Host;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.CleanupMode;
import org.junit.jupiter.api.io.TempDir;

/**
 * The store holding the workspace (ledger, checkpoints, models) goes silent while rank 0 writes a checkpoint to it:
 * HDFS, then S3, in host {@code store} of a {@link HostBed}. Its link is slowed first so that a write takes a while,
 * and cut once a checkpoint is half written. The write is abandoned at the write timeout and training goes on; the
 * torn checkpoint never gets a manifest, not even after the store heals; the run succeeds, its details count the
 * failure, and no wait for a checkpoint lasted much longer than the timeout. A run stopped while its newest checkpoint
 * is torn resumes from the newest complete one.
 */
class CheckpointStoreFaultsIT {
  static final int WRITE_TIMEOUT_S = 8;
  /** A checkpoint of the model below is about 1.2 MB: some seconds at this rate, so a write can be cut mid-way. */
  static final long SLOW_LINK_BPS = 6_000_000;

  @TempDir(cleanup = CleanupMode.ON_SUCCESS)
  static Path dir;
  static HostBed bed;

  @BeforeAll
  static void start() throws Exception {
    System.err.println("CheckpointStoreFaultsIT: logs in " + dir);
    bed = HostBed.start(dir);
  }

  @AfterAll
  static void stop() {
    if (bed != null) {
      bed.close();
    }
  }

  @Test
  void hdfsPartitionedMidWrite() throws Exception {
    try (StoreHost store = StoreHost.hdfs(bed)) {
      scenario(store, "hdfs");
    }
  }

  @Test
  void s3PartitionedMidWrite() throws Exception {
    try (StoreHost store = StoreHost.s3(bed)) {
      scenario(store, "s3");
    }
  }

  private void scenario(StoreHost store, String name) throws Exception {
    Host host = bed.host("store");
    bed.net.slow(host, SLOW_LINK_BPS);
    try {
      survivesATornWrite(store, name + "-torn", host);
      resumesFromTheNewestCompleteCheckpoint(store, name + "-resume", host);
    } finally {
      bed.net.heal(host);
    }
  }

  /** Cut mid-write, held past the timeout, healed: the run goes on and succeeds; the torn step never completes. */
  private void survivesATornWrite(StoreHost store, String runId, Host host) throws Exception {
    // Four epochs (about 500 steps): checkpoints go on well after the cut at the second one.
    Process driver = launch(store, workflow(runId, 4), runId, false);
    long torn = cutMidWrite(store, runId, driver, host);
    Set<Long> completedAfterCut = new TreeSet<>();
    boolean[] tornCompleted = {false};
    try {
      // Held past the timeout: the write is abandoned while the store is still silent.
      Awaitility.await().atMost(Duration.ofSeconds(WRITE_TIMEOUT_S * 4L)).pollInterval(Duration.ofMillis(100))
          .until(() -> log(runId).contains("checkpoint of step " + torn + " abandoned") || !driver.isAlive());
      Thread.sleep(2_000);
    } finally {
      healSlow(host); // healed, at the slow rate of before
    }
    // Until the run ends and a while after, the torn step never gets a manifest; later checkpoints do.
    long end = System.nanoTime() + Duration.ofMinutes(6).toNanos();
    while (driver.isAlive() && System.nanoTime() < end) {
      watch(store, runId, torn, completedAfterCut, tornCompleted);
      Thread.sleep(100);
    }
    assertThat(driver.waitFor(10, TimeUnit.SECONDS)).as("the run ended").isTrue();
    for (int i = 0; i < 20; i++) {
      watch(store, runId, torn, completedAfterCut, tornCompleted);
      Thread.sleep(100);
    }
    JsonNode ledger = ledger(store, runId);
    JsonNode fit = ledger.at("/steps/fit");
    System.err.printf("%s: torn step %d, completed after the cut %s, checkpoint writes %s%n", runId, torn,
        completedAfterCut, fit.at("/details/checkpoint_writes"));
    assertThat(fit.path("status").asText()).as(log(runId)).isEqualTo("SUCCEEDED");
    assertThat(tornCompleted[0]).as("step-%d got a manifest", torn).isFalse();
    assertThat(completedAfterCut).as("checkpoints written after the store healed").anyMatch(s -> s > torn);

    JsonNode writes = fit.at("/details/checkpoint_writes");
    assertThat(writes.path("abandoned").asInt()).isGreaterThanOrEqualTo(1);
    assertThat(writes.path("failed").asInt()).isGreaterThanOrEqualTo(writes.path("abandoned").asInt());
    assertThat(fit.at("/metrics/checkpoints_abandoned").asDouble()).isGreaterThanOrEqualTo(1);
    assertThat(fit.at("/details/training_attempts/0/checkpoint_write_failures").asInt()).isGreaterThanOrEqualTo(1);
    assertThat(fit.at("/details/training_attempts")).as("no retry: training went on").hasSize(1);
    // Training waited for a checkpoint at most about the write timeout at a time (generous margin: 2 shared cores).
    assertThat(writes.path("longest_wait_seconds").asDouble()).isLessThan(WRITE_TIMEOUT_S + 5);
    assertThat(writes.path("write_timeout_seconds").asDouble()).isEqualTo(WRITE_TIMEOUT_S);
  }

  /** Cut mid-write and stopped there: a rerun with --resume takes the newest complete checkpoint, not the torn one. */
  private void resumesFromTheNewestCompleteCheckpoint(StoreHost store, String runId, Host host) throws Exception {
    Process driver = launch(store, workflow(runId, 10), runId, false);
    long torn = cutMidWrite(store, runId, driver, host);
    long complete;
    try {
      Awaitility.await().atMost(Duration.ofSeconds(WRITE_TIMEOUT_S * 4L)).pollInterval(Duration.ofMillis(100))
          .until(() -> log(runId).contains("checkpoint of step " + torn + " abandoned") || !driver.isAlive());
      complete = newestComplete(store, runId).orElseThrow();
      driver.destroyForcibly(); // a crash: nothing of it writes once the store is back
      assertThat(driver.waitFor(20, TimeUnit.SECONDS)).isTrue();
      // Its executors go with the application; none may write once the store is back.
      Awaitility.await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200))
          .until(() -> bed.cluster.executors().isEmpty());
    } finally {
      healSlow(host);
    }
    Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> store.files().stream()
        .anyMatch(f -> f.startsWith("checkpoints/" + runId + "/fit/step-" + torn + "/")));
    assertThat(store.files()).as("the torn checkpoint is there, without a manifest")
        .noneMatch(f -> f.equals("checkpoints/" + runId + "/fit/step-" + torn + "/manifest.json"));
    assertThat(torn).isGreaterThan(complete);

    // Epochs may change on resume: three are enough to show where it resumed.
    Process rerun = launch(store, workflow(runId, 3), runId, true);
    assertThat(rerun.waitFor(6, TimeUnit.MINUTES)).as("the resumed run ended").isTrue();
    Thread.sleep(1_000); // the store's view on this machine follows within a fraction of a second
    JsonNode fit = ledger(store, runId).at("/steps/fit");
    System.err.printf("%s: torn step %d, newest complete %d, resumed: %s%n", runId, torn, complete,
        fit.at("/details/training_attempts"));
    assertThat(fit.path("status").asText()).as(log(runId + "-resume")).isEqualTo("SUCCEEDED");
    assertThat(fit.at("/details/training_attempts/0/resumed_from_step").asLong()).isEqualTo(complete);
  }

  /**
   * Waits for a first complete checkpoint, then for a later one half written (some of its files there, no manifest),
   * and cuts the store's link; returns that step.
   */
  private long cutMidWrite(StoreHost store, String runId, Process driver, Host host) throws Exception {
    long[] torn = {-1};
    Awaitility.await().atMost(Duration.ofMinutes(4)).pollInterval(Duration.ofMillis(20)).until(() -> {
      if (!driver.isAlive()) {
        return true;
      }
      OptionalLong complete = newestComplete(store, runId);
      if (complete.isEmpty()) {
        return false;
      }
      Map<Long, List<String>> steps = stepFiles(runId, store.files());
      for (Map.Entry<Long, List<String>> s : steps.entrySet()) {
        if (s.getKey() > complete.getAsLong() && !s.getValue().contains("manifest.json")
            && s.getValue().stream().anyMatch(f -> !f.startsWith("."))) {
          torn[0] = s.getKey();
          bed.net.partition(host);
          return true;
        }
      }
      return false;
    });
    assertThat(torn[0]).as("a checkpoint was being written while training ran:\n" + log(runId)).isPositive();
    System.err.printf("%s: cut %s while step %d was written (%s)%n", runId, host, torn[0],
        stepFiles(runId, store.files()).get(torn[0]));
    return torn[0];
  }

  /** The link back up, at the slow rate the test writes at. */
  private static void healSlow(Host host) throws IOException {
    bed.net.heal(host);
    bed.net.slow(host, SLOW_LINK_BPS);
  }

  private static void watch(StoreHost store, String runId, long torn, Set<Long> completed, boolean[] tornCompleted)
      throws IOException {
    for (Map.Entry<Long, List<String>> s : stepFiles(runId, store.files()).entrySet()) {
      if (s.getValue().contains("manifest.json")) {
        completed.add(s.getKey());
        if (s.getKey() == torn) {
          tornCompleted[0] = true;
        }
      }
    }
  }

  private static OptionalLong newestComplete(StoreHost store, String runId) throws IOException {
    return stepFiles(runId, store.files()).entrySet().stream().filter(e -> e.getValue().contains("manifest.json"))
        .mapToLong(Map.Entry::getKey).max();
  }

  /** Checkpoint step of the run → the names of the files its folder holds. */
  private static Map<Long, List<String>> stepFiles(String runId, Set<String> files) {
    Map<Long, List<String>> out = new LinkedHashMap<>();
    Pattern stepFile = Pattern.compile("checkpoints/" + Pattern.quote(runId) + "/fit/step-(\\d+)/(.+)");
    for (String f : files) {
      Matcher m = stepFile.matcher(f);
      if (m.matches()) {
        out.computeIfAbsent(Long.parseLong(m.group(1)), k -> new ArrayList<>()).add(m.group(2));
      }
    }
    return out;
  }

  /** A workflow training an MLP of about 100 000 parameters on a9a's test split, 2 workers. */
  private static Path workflow(String name, int epochs) throws IOException {
    Path f = dir.resolve(name + ".yaml");
    Files.writeString(f, """
        name: %s
        steps:
          - { id: raw, kind: load, path: "%s/a9a.t.libsvm", format: libsvm, options: { numFeatures: "123" } }
          - id: fit
            kind: train
            input: raw
            label: label
            workers: 2
            timeout_seconds: 60
            model: { type: mlp, hidden: [256, 256], epochs: %d, batch_size: 128, optimizer: adam, lr: 0.002, seed: 5 }
            checkpoint: { every_steps: 60, keep: 2, write_timeout_seconds: %d }
        """.formatted(name, HostBed.DATA, epochs, WRITE_TIMEOUT_S));
    return f;
  }

  /** {@code stagecraft run} in the driver host, the workspace on the store. */
  private static Process launch(StoreHost store, Path workflow, String runId, boolean resume) throws IOException {
    Map<String, String> conf = new LinkedHashMap<>(bed.cluster.driverConf(bed.host("driver").address(), 1, true));
    conf.putAll(store.sparkConf());
    List<String> args = new ArrayList<>(List.of("run", workflow.toString(), "--run-id", runId, "--workspace",
        store.workspace()));
    if (resume) {
      args.add("--resume");
    }
    List<String> cmd = bed.cluster.driverCommand(bed.host("driver"), conf, "dev.stagecraft.jobs.Main", args);
    Path log = dir.resolve(runId + (resume ? "-resume" : "") + ".log");
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
        .redirectOutput(log.toFile());
    pb.environment().put("STAGECRAFT_PROGRESS", "plain");
    pb.environment().put("SPARK_LOCAL_IP", bed.host("driver").address());
    System.err.println("CheckpointStoreFaultsIT: " + runId + (resume ? " (resumed)" : "") + " on " + store.name());
    return pb.start();
  }

  private static String log(String name) throws IOException {
    Path f = dir.resolve(name + ".log");
    return Files.exists(f) ? Files.readString(f) : "";
  }

  private static JsonNode ledger(StoreHost store, String runId) throws IOException {
    return Ledgers.newest(store.localWorkspace(), runId);
  }
}
