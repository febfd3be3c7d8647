package dev.stagecraft.jobs.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.jobs.ledger.Lease;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.testing.LocalSpark;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The engine's behaviour, run against the workspace a subclass provides (local file system, HDFS). */
abstract class EngineScenarios {
  static final StepKinds KINDS = StepKinds.discover().with(new FailingKind(), new BlockingKind());

  @TempDir Path dir;
  final SparkSession spark = LocalSpark.get();
  final List<String> started = Collections.synchronizedList(new ArrayList<>());
  String workspace;

  /** A fresh, empty workspace URI for one test. */
  abstract String newWorkspace(String name) throws Exception;

  @BeforeEach
  void setUp(org.junit.jupiter.api.TestInfo info) throws Exception {
    workspace = newWorkspace(info.getTestMethod().orElseThrow().getName());
    Files.writeString(dir.resolve("people.csv"), "id,name,age\n1,ann,31\n2,bob,45\n3,cy,27\n4,di,52\n");
    Files.writeString(dir.resolve("cities.json"),
        "{\"id\":1,\"city\":\"Oslo\"}\n{\"id\":2,\"city\":\"Lima\"}\n{\"id\":3,\"city\":\"Oslo\"}\n"
            + "{\"id\":4,\"city\":\"Pune\"}\n");
  }

  Engine engine() {
    return new Engine(spark, KINDS, new EngineListener() {
      @Override
      public void stepStarted(String stepId, String kind, int attempt, String jobGroup) {
        started.add(stepId);
      }
    });
  }

  WorkflowSpec workflow(String yaml) throws Exception {
    Path f = dir.resolve("wf.yaml");
    Files.writeString(f, yaml);
    return new WorkflowLoader(KINDS).load(f);
  }

  Engine.Options options(String runId) {
    return Engine.Options.run(runId).withWorkspace(workspace);
  }

  static final String THREE_STEPS = """
      name: people
      params: { cities: cities.json }
      steps:
        - id: people
          kind: load
          path: people.csv
          options: { header: true, inferSchema: true }
        - id: cities
          kind: load
          path: ${cities}
        - id: joined
          kind: sql
          sql: SELECT p.id, p.name, p.age, c.city FROM people p JOIN cities c ON p.id = c.id
        - id: by_city
          kind: sql
          sql: SELECT city, COUNT(*) AS n, SUM(age) AS total_age FROM joined GROUP BY city
      """;

  @Test
  void runsAMultiStepWorkflowAndRecordsItInTheLedger() throws Exception {
    RunLedger ledger = engine().run(workflow(THREE_STEPS), options("r1"));

    assertThat(ledger.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(ledger.steps().keySet()).containsExactly("people", "cities", "joined", "by_city");
    for (StepRecord r : ledger.steps().values()) {
      assertThat(r.status()).isEqualTo(StepStatus.SUCCEEDED);
      assertThat(r.attempts()).isEqualTo(1);
      assertThat(r.started()).isNotNull();
      assertThat(r.ended()).isNotNull();
      assertThat(r.outputs().get("output").uri()).contains("/runs/r1/steps/").endsWith("/attempt-1/output");
    }
    assertThat(ledger.step("people").outputs().get("output").rows()).isEqualTo(4);
    assertThat(ledger.step("joined").outputs().get("output").rows()).isEqualTo(4);
    assertThat(ledger.step("by_city").outputs().get("output").rows()).isEqualTo(3);
    assertThat(ledger.step("joined").upstream()).containsExactlyInAnyOrder("people", "cities");

    Map<String, String> byCity = new TreeMap<>();
    for (Row row : spark.read().parquet(ledger.step("by_city").outputs().get("output").uri()).collectAsList()) {
      byCity.put(row.getString(0), row.getLong(1) + "/" + row.get(2));
    }
    assertThat(byCity).containsExactly(Map.entry("Lima", "1/45"), Map.entry("Oslo", "2/58"), Map.entry("Pune", "1/52"));

    // The ledger on disk is what run() returned, and what `status` reads.
    Workspace ws = new Workspace(workspace, spark.sparkContext().hadoopConfiguration());
    RunLedger stored = new LedgerStore(ws).read("r1").orElseThrow();
    assertThat(stored).isEqualTo(ledger);
    assertThat(Lease.liveHolder(ws.ledgerFs(), ws.runLease("r1"), Duration.ofHours(1))).as("lease released").isEmpty();
    assertThat(stored.fences()).as("written under the run lease's first epoch").containsEntry("run", 1L);
  }

  @Test
  void resumeRerunsOnlyTheStepsThatDidNotSucceedAndLeavesEarlierOutputsUntouched() throws Exception {
    WorkflowSpec spec = workflow(THREE_STEPS.replace("cities: cities.json", "cities: late.json"));
    RunLedger first = engine().run(spec, options("r2"));

    assertThat(first.status()).isEqualTo(RunStatus.FAILED);
    assertThat(first.step("people").status()).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(first.step("cities").status()).isEqualTo(StepStatus.FAILED);
    assertThat(first.step("cities").error())
        .startsWith(dir.resolve("wf.yaml") + ": step 'cities' field 'path': cannot read 'late.json' as json: ")
        .contains("PATH_NOT_FOUND");
    assertThat(first.step("cities").errorCategory()).isEqualTo("USER");
    assertThat(first.step("cities").outputs()).isEmpty();
    assertThat(first.step("joined").status()).isEqualTo(StepStatus.SKIPPED);
    assertThat(first.step("joined").error()).isEqualTo("upstream step 'cities' failed");
    assertThat(first.step("by_city").status()).isEqualTo(StepStatus.SKIPPED);
    Map<String, Long> peopleFiles = files(first.step("people").outputs().get("output").uri());
    assertThat(peopleFiles).isNotEmpty();

    Files.copy(dir.resolve("cities.json"), dir.resolve("late.json")); // the late input arrives
    started.clear();
    RunLedger second = engine().run(spec, options("r2").withResume());

    assertThat(second.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(started).containsExactlyInAnyOrder("cities", "joined", "by_city");
    assertThat(second.step("people")).isEqualTo(first.step("people"));
    assertThat(files(second.step("people").outputs().get("output").uri())).isEqualTo(peopleFiles);
    assertThat(second.step("cities").attempts()).isEqualTo(2);
    assertThat(second.step("cities").outputs().get("output").uri()).endsWith("/attempt-2/output");
    assertThat(second.step("by_city").outputs().get("output").rows()).isEqualTo(3);

    // Resuming a finished run runs nothing; running a step again replaces its output, never adds to it.
    started.clear();
    RunLedger third = engine().run(spec, options("r2").withResume());
    assertThat(started).isEmpty();
    assertThat(third.steps()).isEqualTo(second.steps());
    RunLedger fourth = engine().run(spec, options("r2").withOnlyStep("joined"));
    assertThat(fourth.step("joined").attempts()).isEqualTo(2);
    String joined = fourth.step("joined").outputs().get("output").uri();
    assertThat(spark.read().parquet(joined).count()).isEqualTo(4);
    assertThat(stepAttempts("r2", "joined")).containsExactly("attempt-2");
  }

  @Test
  void aFailedStepLeavesNoCommittedOutput() throws Exception {
    Path fault = Files.createFile(dir.resolve("fail-now"));
    WorkflowSpec spec = workflow(THREE_STEPS + """
          - id: copy
            kind: write_then_fail
            input: people
            fail_if_exists: %s
        """.formatted(fault));
    RunLedger first = engine().run(spec, options("r3"));

    assertThat(first.step("copy").status()).isEqualTo(StepStatus.FAILED);
    assertThat(first.step("copy").error()).endsWith("injected fault after writing all rows");
    assertThat(first.step("copy").outputs()).isEmpty();
    assertThat(first.step("by_city").status()).as("independent steps still run").isEqualTo(StepStatus.SUCCEEDED);
    assertThat(first.status()).isEqualTo(RunStatus.FAILED);
    assertThat(stepAttempts("r3", "copy")).as("the failed attempt's rows are gone").isEmpty();

    Files.delete(fault);
    RunLedger second = engine().run(spec, options("r3").withResume());
    assertThat(second.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(second.step("copy").outputs().get("output").rows()).isEqualTo(4);
    assertThat(stepAttempts("r3", "copy")).containsExactly("attempt-2");
  }

  @Test
  void aSecondRunWithTheSameIdIsRefusedWhileTheFirstIsLive() throws Exception {
    BlockingKind.reset();
    WorkflowSpec spec = workflow("""
        name: slow
        steps:
          - { id: wait, kind: block }
        """);
    CompletableFuture<RunLedger> first = CompletableFuture.supplyAsync(() -> engine().run(spec, options("r4")));
    try {
      assertThat(BlockingKind.started.await(60, TimeUnit.SECONDS)).isTrue();
      assertThatThrownBy(() -> engine().run(spec, options("r4")))
          .isInstanceOf(StagecraftException.class)
          .hasMessageStartingWith("Cannot start run 'r4': it is live in another process: pid "
              + ProcessHandle.current().pid() + " on host ")
          .hasMessageContaining("(user " + System.getProperty("user.name") + ", `run`)")
          .hasMessageContaining("last heartbeat");
      assertThatThrownBy(() -> engine().run(spec, options("r4").withOnlyStep("wait")))
          .hasMessageStartingWith("Cannot start step 'wait' of run 'r4': the whole run is live in another process");
    } finally {
      BlockingKind.release.countDown();
    }
    assertThat(first.get(60, TimeUnit.SECONDS).status()).isEqualTo(RunStatus.SUCCEEDED);
  }

  @Test
  void independentStepsRunConcurrently() throws Exception {
    BlockingKind.reset(2);
    WorkflowSpec spec = workflow("""
        name: parallel
        steps:
          - { id: left, kind: block }
          - { id: right, kind: block }
          - { id: both, kind: sql, sql: "SELECT * FROM left UNION ALL SELECT * FROM right" }
        """);
    CompletableFuture<RunLedger> run = CompletableFuture.supplyAsync(() -> engine().run(spec, options("r11")));
    try {
      // Both blocking steps are inside run() at once: neither waited for the other.
      assertThat(BlockingKind.started.await(60, TimeUnit.SECONDS)).isTrue();
      assertThat(started).containsExactlyInAnyOrder("left", "right");
    } finally {
      BlockingKind.release.countDown();
    }
    RunLedger ledger = run.get(60, TimeUnit.SECONDS);
    assertThat(ledger.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(ledger.step("both").outputs().get("output").rows()).isEqualTo(2);
  }

  @Test
  void aLeaseLeftByADeadProcessIsTakenOver() throws Exception {
    WorkflowSpec spec = workflow(THREE_STEPS);
    Workspace ws = new Workspace(workspace, spark.sparkContext().hadoopConfiguration());
    Duration stale = Duration.ofMillis(1500);
    Lease dead = Lease.acquire(ws.ledgerFs(), ws.runLease("r5"), "run", "run 'r5'", "killed", stale,
        Duration.ofHours(1));
    // The holder "dies": no heartbeat comes, and after `stale` the lease is free.
    assertThatThrownBy(() -> engine().run(spec, options("r5").withLease(stale, Duration.ofMillis(200))))
        .hasMessageStartingWith("Cannot start run 'r5': it is live in another process");
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10))
        .until(() -> Lease.liveHolder(ws.ledgerFs(), ws.runLease("r5"), stale).isEmpty());
    RunLedger ledger = engine().run(spec, options("r5").withLease(stale, Duration.ofMillis(200)));
    assertThat(ledger.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(dead.lost()).isFalse(); // it never beat again, so it never noticed
    dead.close(); // closing a lease someone else took over must not delete theirs (already released here)
  }

  @Test
  void refusesToRestartAnExistingRunWithoutResumeAndToResumeAMissingOne() throws Exception {
    WorkflowSpec spec = workflow(THREE_STEPS);
    engine().run(spec, options("r6"));
    assertThatThrownBy(() -> engine().run(spec, options("r6")))
        .hasMessage("Cannot start run 'r6': it already exists in workspace " + Workspace.normalise(workspace)
            + " (SUCCEEDED, 4 of 4 steps succeeded). Add --resume to re-run the steps that did not succeed, or "
            + "choose another --run-id.");
    assertThatThrownBy(() -> engine().run(spec, options("nope").withResume()))
        .hasMessage("Cannot resume run 'nope': it has no ledger in workspace " + Workspace.normalise(workspace)
            + " (drop --resume to start it)");
  }

  @Test
  void stepRunsOneStepOnlyOnceItsUpstreamSucceeded() throws Exception {
    WorkflowSpec spec = workflow(THREE_STEPS);
    assertThatThrownBy(() -> engine().run(spec, options("r7").withOnlyStep("joined")))
        .hasMessage("Cannot run step 'joined' of run 'r7': upstream step 'people' is PENDING (expected SUCCEEDED; "
            + "run it first)");
    for (String s : List.of("people", "cities", "joined")) {
      RunLedger l = engine().run(spec, options("r7").withOnlyStep(s));
      assertThat(l.step(s).status()).isEqualTo(StepStatus.SUCCEEDED);
      assertThat(l.status()).isEqualTo(RunStatus.INCOMPLETE);
    }
    assertThat(started).containsExactly("people", "cities", "joined");
    RunLedger done = engine().run(spec, options("r7").withOnlyStep("by_city"));
    assertThat(done.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThatThrownBy(() -> engine().run(spec, options("r7").withOnlyStep("nope")))
        .hasMessageStartingWith("Invalid step 'nope': ")
        .hasMessageEndingWith("has no such step (expected one of: people, cities, joined, by_city)");
  }

  @Test
  void setOverridesParamsAndRejectsUnknownOnes() throws Exception {
    Files.copy(dir.resolve("cities.json"), dir.resolve("other.json"));
    WorkflowSpec spec = workflow(THREE_STEPS.replace("cities: cities.json", "cities: missing.json"));
    RunLedger l = engine().run(spec, options("r8").withOverrides(Map.of("cities", "other.json")));
    assertThat(l.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(l.params()).containsEntry("cities", "other.json");
    assertThatThrownBy(() -> engine().run(spec, options("r9").withOverrides(Map.of("citiez", "x"))))
        .hasMessage("Invalid --set citiez=x: " + dir.resolve("wf.yaml") + " has no parameter 'citiez' (expected one "
            + "of: cities)");
  }

  @Test
  void aChangedStepRunsAgainOnResume() throws Exception {
    WorkflowSpec spec = workflow(THREE_STEPS);
    engine().run(spec, options("r10"));
    started.clear();
    WorkflowSpec edited = workflow(THREE_STEPS.replace("GROUP BY city", "WHERE age > 40 GROUP BY city"));
    RunLedger l = engine().run(edited, options("r10").withResume());
    assertThat(started).containsExactly("by_city");
    assertThat(l.step("by_city").outputs().get("output").rows()).isEqualTo(2);
  }

  /** Relative file name → length of every file under a folder. */
  Map<String, Long> files(String uri) throws Exception {
    Workspace ws = new Workspace(workspace, spark.sparkContext().hadoopConfiguration());
    Map<String, Long> out = new TreeMap<>();
    org.apache.hadoop.fs.Path root = new org.apache.hadoop.fs.Path(uri);
    RemoteIterator<LocatedFileStatus> it = ws.fs().listFiles(root, true);
    while (it.hasNext()) {
      LocatedFileStatus s = it.next();
      out.put(s.getPath().getName(), s.getLen() * 1_000_000_000_000L + s.getModificationTime() % 1_000_000_000_000L);
    }
    return out;
  }

  List<String> stepAttempts(String runId, String step) throws Exception {
    Workspace ws = new Workspace(workspace, spark.sparkContext().hadoopConfiguration());
    if (!ws.fs().exists(ws.stepDir(runId, step))) {
      return List.of();
    }
    List<String> out = new ArrayList<>();
    for (FileStatus s : ws.fs().listStatus(ws.stepDir(runId, step))) {
      if (s.getPath().getName().startsWith("attempt-")) {
        out.add(s.getPath().getName());
      }
    }
    Collections.sort(out);
    return out;
  }

}
