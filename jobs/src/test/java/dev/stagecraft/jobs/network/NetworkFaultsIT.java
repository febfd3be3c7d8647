package dev.stagecraft.jobs.network;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.infer.ScoringData;
import dev.stagecraft.jobs.train.TrainedModel;
import dev.stagecraft.testing.HostNetwork.Host;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.spark.sql.SparkSession;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.CleanupMode;
import org.junit.jupiter.api.io.TempDir;

/**
 * Training and inference across real hosts (network namespaces, {@link HostBed}) while a host's link fails the way
 * links fail on a cluster: silently. Each run's driver is a {@code stagecraft run} in its own host.
 */
class NetworkFaultsIT {
  /** A collective wait this long means a silent peer here: a step of this model takes milliseconds. */
  static final int COLLECTIVE_TIMEOUT_S = 10;

  /**
   * The slow link: 20 Mbit/s, where the others carry several Gbit/s. An all-reduce of this model's 8,000 parameters
   * then takes tens of milliseconds on it, ten times and more a step's compute.
   */
  static final long SLOW_LINK_BPS = 20_000_000;

  // Kept when a test fails: the driver, master and worker logs are what explains a network fault.
  /**
   * How soon the driver gives up on a silent executor: Spark's default is 120 s ({@code spark.network.timeout}), with
   * a heartbeat every 10 s, checked every 60 s; a test needs no more than a few missed heartbeats. (The check interval
   * may not exceed the timeout: Spark refuses to start otherwise.)
   */
  static final Map<String, String> EXECUTOR_LOSS = Map.of("spark.network.timeout", "20s",
      "spark.network.timeoutInterval", "5s", "spark.executor.heartbeatInterval", "2s");

  @TempDir(cleanup = CleanupMode.ON_SUCCESS)
  static Path dir;
  static HostBed bed;
  static JsonNode reference;
  static SparkSession local;

  @BeforeAll
  static void start() throws Exception {
    System.err.println("NetworkFaultsIT: logs in " + dir);
    bed = HostBed.start(dir);
  }

  @AfterAll
  static void stop() {
    if (local != null) {
      local.stop();
      // Integration tests share a JVM: the next class's getOrCreate() must not find this session.
      SparkSession.clearActiveSession();
      SparkSession.clearDefaultSession();
    }
    if (bed != null) {
      bed.close();
    }
  }

  /** A local Spark session in this JVM, for writing inputs and reading outputs; stopped with the class. */
  static synchronized SparkSession local() {
    if (local == null) {
      local = SparkSession.builder().master("local[1]").appName("network-faults-it")
          .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
          .config("spark.driver.bindAddress", "127.0.0.1").config("spark.sql.shuffle.partitions", "2")
          .getOrCreate();
    }
    return local;
  }

  /** A workflow training an MLP on a9a's test split, one worker per worker host, a checkpoint every 100 steps. */
  static Path trainWorkflow(String name) throws IOException {
    Path f = dir.resolve(name + ".yaml");
    Files.writeString(f, """
        name: %s
        steps:
          - { id: raw, kind: load, path: "%s/a9a.t.libsvm", format: libsvm, options: { numFeatures: "123" } }
          - id: fit
            kind: train
            input: raw
            label: label
            workers: %d
            timeout_seconds: %d
            model: { type: mlp, hidden: [64], epochs: 8, batch_size: 128, optimizer: adam, lr: 0.002, seed: 5 }
            checkpoint: { every_steps: 100, keep: 2 }
        """.formatted(name, HostBed.DATA, HostBed.WORKERS.size(), COLLECTIVE_TIMEOUT_S));
    return f;
  }

  /** The same training with nothing failing: what every faulty run must end with. */
  static synchronized JsonNode reference() throws Exception {
    if (reference == null) {
      reference = bed.run(trainWorkflow("reference"), "reference", Map.of()).await(Duration.ofMinutes(5));
      assertThat(reference.at("/steps/fit/status").asText()).as(reference.toString()).isEqualTo("SUCCEEDED");
    }
    return reference;
  }

  @Test
  void aWorkerHostCutOffMidEpochCostsAtMostOneCheckpointInterval() throws Exception {
    JsonNode clean = reference();
    HostBed.Driver run = bed.run(trainWorkflow("cut"), "cut", Map.of());
    Awaitility.await().atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(50))
        .until(() -> newestCheckpoint("cut") > 0 || !run.process.isAlive());
    long savedAtCut = newestCheckpoint("cut");
    assertThat(savedAtCut).as("training was running when the first checkpoint appeared").isPositive();
    Executor survivor = Executor.of(bed, 0);
    Executor.Census before = survivor.census(bed.host("w2"));
    assertThat(before.socketsTo()).as("the ring connection between w1 and w2, at least").isPositive();
    Host w2 = bed.host("w2");
    bed.net.partition(w2);
    try {
      // The rank on w1 waits for data that never comes, and says which rank and host went silent.
      Awaitility.await().atMost(Duration.ofSeconds(COLLECTIVE_TIMEOUT_S * 4L)).pollInterval(Duration.ofMillis(200))
          .until(() -> run.output().contains("Training attempt 1 of "));
    } finally {
      bed.net.heal(w2);
    }
    String failure = run.output().lines().filter(l -> l.contains("Training attempt 1 of ")).findFirst().orElseThrow();
    assertThat(failure).contains(w2.address()).contains("within " + COLLECTIVE_TIMEOUT_S + "s");

    // Once training runs again (a newer checkpoint than the resumed one), w1's executor holds what it held before.
    Awaitility.await().atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(100))
        .until(() -> newestCheckpoint("cut") > savedAtCut + 100 || !run.process.isAlive());
    Executor.Census after = survivor.census(w2);
    JsonNode ledger = run.await(Duration.ofMinutes(5));
    JsonNode fit = ledger.at("/steps/fit");
    assertThat(fit.path("status").asText()).as(run.output()).isEqualTo("SUCCEEDED");
    assertThat(after.collectiveThreads()).as("collective threads of the failed attempt are gone")
        .isEqualTo(before.collectiveThreads());
    assertThat(after.socketsTo()).as("sockets to w2 after the retry vs before the cut")
        .isLessThanOrEqualTo(before.socketsTo());

    JsonNode attempts = fit.at("/details/training_attempts");
    assertThat(attempts).hasSize(2);
    assertThat(attempts.get(0).path("error").asText()).contains(w2.address());
    long resumedFrom = attempts.get(1).path("resumed_from_step").asLong();
    System.err.printf("cut: checkpoint %d at the cut, resumed from %d; census before %s, after %s; %s%n", savedAtCut,
        resumedFrom, before, after, failure);
    assertThat(resumedFrom).as("at most one checkpoint interval repeated").isGreaterThanOrEqualTo(savedAtCut);
    assertSameCurve(fit, clean.at("/steps/fit"));
  }

  @Test
  void aWorkerHostCutOffMidInferenceLosesAndDuplicatesNoRow() throws Exception {
    long rows = 400_000;
    String input = dir.resolve("scoring-input").toUri().toString();
    ScoringData.input(local(), input, rows, 24);
    Path model = ScoringData.mlp(dir.resolve("scoring-model"), 7);
    Path f = dir.resolve("inf.yaml");
    Files.writeString(f, """
        name: inf
        steps:
          - id: score
            kind: infer
            model: "%s"
            input: "%s"
            id_columns: [id]
            batch_size: 1024
        """.formatted(model.toUri(), input));
    HostBed.Driver run = bed.run(f, "inf", EXECUTOR_LOSS);
    Host w2 = bed.host("w2");
    try {
      // Once a scoring task has committed its files, every executor is busy with the other 23: cut w2 off.
      Awaitility.await().atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(20))
          .until(() -> committedTasks("inf", "score") > 0 || !run.process.isAlive());
      assertThat(run.process.isAlive()).as(run.output()).isTrue();
      bed.net.partition(w2);
      JsonNode ledger = run.await(Duration.ofMinutes(5));
      JsonNode score = ledger.at("/steps/score");
      assertThat(score.path("status").asText()).as(run.output()).isEqualTo("SUCCEEDED");
      ScoringData.assertExactlyOnce(local(), score.at("/outputs/output/uri").asText(),
          score.at("/outputs/quarantine/uri").asText(), rows);
      assertThat(score.at("/metrics/rows").asDouble()).isEqualTo(rows);
      assertThat(score.at("/metrics/bad_rows").asDouble()).isEqualTo(ScoringData.badRows(rows));
      assertThat(run.output()).as("the driver lost w2's executor").contains("Lost executor");
      System.err.printf("inf: step %.1f s; %s%n", score.path("seconds").asDouble(), run.output().lines()
          .filter(l -> l.contains("Lost executor")).findFirst().orElse(""));
    } finally {
      bed.net.heal(w2);
    }
  }

  @Test
  void aStrangerOnTheNetworkIsRefusedLearnsNothingAndChangesNothing() throws Exception {
    JsonNode clean = reference();
    HostBed.Driver run = bed.run(trainWorkflow("stranger"), "stranger", Map.of());
    Awaitility.await().atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(50))
        .until(() -> newestCheckpoint("stranger") > 0 || !run.process.isAlive());
    assertThat(run.process.isAlive()).as("training runs: its rendezvous and ring listen").isTrue();
    // Every port the driver and the executors listen on: the rendezvous, the rings, and Spark's own.
    List<String> targets = new java.util.ArrayList<>();
    new Executor(run.process.toHandle()).listeningPorts()
        .forEach(p -> targets.add(bed.host("driver").address() + ":" + p));
    for (int w = 0; w < HostBed.WORKERS.size(); w++) {
      String address = bed.host(HostBed.WORKERS.get(w)).address();
      Executor.of(bed, w).listeningPorts().forEach(p -> targets.add(address + ":" + p));
    }
    Host stranger = bed.host("stranger");
    List<String> cmd = new java.util.ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
        dev.stagecraft.testing.StandaloneCluster.testClassPath(), Stranger.class.getName(), stranger.address()));
    cmd.addAll(targets);
    Process p = new ProcessBuilder(bed.net.command(stranger, cmd)).redirectErrorStream(true).start();
    String said = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(said).isZero();

    JsonNode fit = run.await(Duration.ofMinutes(5)).at("/steps/fit");
    assertThat(fit.path("status").asText()).as(run.output()).isEqualTo("SUCCEEDED");
    System.err.println("stranger:\n" + said);
    List<String> lines = said.lines().filter(l -> l.startsWith("target ")).toList();
    assertThat(lines).hasSameSizeAs(targets);
    String groupPrefix = "stranger/fit/";
    assertThat(lines).allSatisfy(l -> assertThat(l).doesNotContain("REGISTERED").doesNotContain(groupPrefix)
        .doesNotContain("expected"));
    // Our rendezvous saw it and said so, naming the stranger's address.
    assertThat(run.output()).contains("Rejected a rendezvous connection from /" + stranger.address());
    // Nothing it sent reached the training: the same losses and parameters as the undisturbed run.
    assertThat(fit.at("/details/training_attempts")).hasSize(1);
    assertSameCurve(fit, clean.at("/steps/fit"));
  }

  /** Task folders committed so far under a step's attempt (Hadoop's committer moves each there when it is done). */
  static long committedTasks(String runId, String step) {
    Path steps = bed.workspace().resolve("runs/" + runId + "/steps/" + step);
    if (!Files.isDirectory(steps)) {
      return 0;
    }
    try (Stream<Path> all = Files.walk(steps)) {
      return all.filter(p -> p.getFileName().toString().startsWith("task_")).count();
    } catch (IOException | java.io.UncheckedIOException e) {
      return 0; // a folder vanished while walking: ask again
    }
  }

  @Test
  void aSlowLinkChangesNoResultAndTheLedgerNamesTheRankBehindIt() throws Exception {
    JsonNode clean = reference();
    Host w2 = bed.host("w2");
    bed.net.slow(w2, SLOW_LINK_BPS);
    JsonNode fit;
    try {
      fit = bed.run(trainWorkflow("slow"), "slow", Map.of()).await(Duration.ofMinutes(6)).at("/steps/fit");
    } finally {
      bed.net.heal(w2);
    }
    assertThat(fit.path("status").asText()).as(fit.toString()).isEqualTo("SUCCEEDED");
    assertThat(fit.at("/details/training_attempts")).as("the slow link tripped no timeout").hasSize(1);
    List<double[]> curve = TrainedModel.lossCurve(fit);
    List<double[]> cleanCurve = TrainedModel.lossCurve(clean.at("/steps/fit"));
    assertThat(curve.get(curve.size() - 1)[1]).as("final loss")
        .isCloseTo(cleanCurve.get(cleanCurve.size() - 1)[1], org.assertj.core.data.Offset.offset(1e-6));
    assertSameCurve(fit, clean.at("/steps/fit"));
    JsonNode slowest = fit.at("/details/allreduce_slowest_rank");
    System.err.printf("slow: all-reduce %.2f s (clean run %.2f s); slowest %s; waits %s%n",
        fit.at("/metrics/allreduce_seconds").asDouble(), clean.at("/steps/fit/metrics/allreduce_seconds").asDouble(),
        slowest, fit.at("/details/allreduce_waits"));
    assertThat(slowest.path("host").asText()).as(fit.at("/details/allreduce_waits").toString())
        .isEqualTo(w2.address());
    // Its neighbours waited on it: frames from it arrived slowly, and sends to it were held back.
    int slowRank = slowest.path("rank").asInt();
    JsonNode waits = fit.at("/details/allreduce_waits");
    double onIt = 0;
    for (JsonNode w : waits) {
      if (w.path("waited_for_rank").asInt() == slowRank) {
        onIt += w.path("inside_frame_s").asDouble();
      }
      if (w.path("sending_to_rank").asInt() == slowRank) {
        onIt += w.path("sending_s").asDouble();
      }
    }
    assertThat(onIt).isPositive();
  }

  /** The losses of every step, and the final parameters, equal those of the run that nothing disturbed. */
  static void assertSameCurve(JsonNode fit, JsonNode cleanFit) throws IOException {
    List<double[]> curve = TrainedModel.lossCurve(fit);
    List<double[]> cleanCurve = TrainedModel.lossCurve(cleanFit);
    assertThat(curve).hasSameSizeAs(cleanCurve);
    for (int i = 0; i < curve.size(); i++) {
      assertThat(curve.get(i)[0]).isEqualTo(cleanCurve.get(i)[0]);
      assertThat(curve.get(i)[1]).as("loss at step %s", curve.get(i)[0])
          .isCloseTo(cleanCurve.get(i)[1], org.assertj.core.data.Offset.offset(1e-4));
    }
    float[] a = TrainedModel.weights(fit);
    float[] b = TrainedModel.weights(cleanFit);
    assertThat(a).hasSameSizeAs(b);
    for (int i = 0; i < a.length; i++) {
      assertThat(a[i]).as("parameter %d", i).isCloseTo(b[i], org.assertj.core.data.Offset.offset(1e-4f));
    }
  }

  /** The newest step with a complete checkpoint (manifest written) of a run's fit step, or -1. */
  static long newestCheckpoint(String runId) throws IOException {
    Path root = bed.workspace().resolve("checkpoints/" + runId + "/fit");
    if (!Files.isDirectory(root)) {
      return -1;
    }
    try (Stream<Path> dirs = Files.list(root)) {
      return dirs.filter(d -> Files.exists(d.resolve("manifest.json")))
          .mapToLong(d -> Long.parseLong(d.getFileName().toString().substring("step-".length()))).max().orElse(-1);
    }
  }
}
