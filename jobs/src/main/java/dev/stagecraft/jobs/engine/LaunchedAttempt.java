package dev.stagecraft.jobs.engine;

import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.ledger.Json;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.sizing.SizingDecision;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepKind;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;
import org.apache.spark.sql.SparkSession;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one attempt of a step as its own Spark application ({@link Placement}), through a {@link StepLauncher}. The
 * launched {@code stagecraft step} records the attempt in the ledger as any step does ({@link InProcessAttempt}, in
 * that application); this side prepares it, sizes it, waits for it, and adds how the application ended.
 */
final class LaunchedAttempt {
  private static final Logger LOG = LoggerFactory.getLogger(LaunchedAttempt.class);

  private final SparkSession spark;
  private final StepKinds kinds;
  private final EngineListener listener;
  private final Optional<StepLauncher> launcher;

  LaunchedAttempt(SparkSession spark, StepKinds kinds, EngineListener listener, Optional<StepLauncher> launcher) {
    this.spark = spark;
    this.kinds = kinds;
    this.listener = listener;
    this.launcher = launcher;
  }

  /**
   * Launches the step's application and waits for it; records in the ledger how the application ended (exit code,
   * log), and a failure if it ended without recording one. Never throws for a step failure.
   */
  void run(RunContext call, StepConfig step) {
    WorkflowSpec spec = call.spec();
    Workspace ws = call.ws();
    LedgerStore store = call.store();
    CostMeter meter = call.meter();
    String runId = call.runId();
    String id = step.id();
    int attempt = store.read(runId).orElseThrow().step(id).attempts() + 1;
    String name = id + "-attempt-" + attempt;
    Path usage = new Path(ws.runDir(runId), "applications/" + name + ".usage.json");
    Path log = new Path(ws.runDir(runId), "applications/" + name + ".log");
    Path prepared = new Path(ws.runDir(runId), "applications/" + name + ".prepared.json");
    listener.stepStarted(id, step.kind(), attempt, Attempts.jobGroup(runId, id));
    meter.stepStarted(id);
    long start = System.nanoTime();
    StepLauncher.Launched launched = null;
    Throwable failure = null;
    boolean preparing = true;
    try {
      RunLedger ledger = store.read(runId).orElseThrow();
      StepConfig resolved = StepTemplates.resolve(spec, step, ledger, ledger.params(), ws, runId);
      prepare(spec, ws, ledger, resolved, attempt, prepared);
      preparing = false;
      // The application is sized before it starts: with sizing: auto, the policy right-sized from earlier runs (the
      // launched attempt records the same decision in the ledger).
      Optional<ResourcePolicy> policy = StepSizing.decide(spec, kinds.get(resolved.kind()), resolved, ws, ledger,
          StepSizing.deadlineSeconds(spec, id, ledger.created(), Instant.now()))
          .map(SizingDecision::policy).or(() -> spec.policyOf(step));
      launched = launcher.orElseThrow().launch(new StepLauncher.Request(spec, step, policy, runId, ws,
          call.parentLease(), usage, log, prepared), status -> listener.stepProgress(id, status));
      meter.launched(usage);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      failure = e;
    } catch (Exception e) {
      failure = e;
    } finally {
      meter.stepFinished(id);
      Attempts.deleteScratch(ws, runId, id, attempt);
    }
    double secs = Attempts.seconds(start);
    Map<String, Object> app = new LinkedHashMap<>();
    app.put("placement", "own application");
    if (launched != null) {
      app.put("exit_code", launched.exitCode());
      app.put("spark_submit", launched.sparkSubmit());
      app.put("log", launched.log());
      app.put("seconds", Math.round(launched.seconds() * 10) / 10.0);
    }
    StepLauncher.Launched l = launched;
    Throwable f = failure;
    // A failure while preparing is the step's own (bad input, say), reported as it would be in-process.
    String failed = f == null ? null : preparing ? Attempts.oneLine(f)
        : "Cannot run step '" + id + "' as its own Spark application: " + Attempts.oneLine(f);
    RunLedger after = store.update(runId, ledger -> ledger.withStep(id, r -> {
      StepRecord attempted = r.attempts() >= attempt ? r : r.started(RunLedger.now());
      if (f != null) {
        return attempted.failed(RunLedger.now(), secs, failed, StagecraftException.categoryOf(f).name(),
            Map.of("application", app));
      }
      if (attempted.status() == StepStatus.SUCCEEDED || attempted.status() == StepStatus.FAILED) {
        return attempted.withDetail("application", app);
      }
      return attempted.failed(RunLedger.now(), secs, "The Spark application of step '" + id + "' exited with code "
          + l.exitCode() + " before it recorded a result (its output: " + l.log() + ")",
          ErrorCategory.EXTERNAL.name(), attempted.withDetail("application", app).details());
    }, RunLedger.now()));
    listener.stepFinished(id, after.step(id));
  }

  /**
   * Runs the step kind's {@link StepKind#prepare} here, in the workflow's application, on its default executors and
   * in the step's job group, and writes what it returns to {@code file} for the launched attempt.
   */
  private void prepare(WorkflowSpec spec, Workspace ws, RunLedger ledger, StepConfig resolved, int attempt,
      Path file) throws Exception {
    String runId = ledger.runId();
    String id = resolved.id();
    SparkContext sc = spark.sparkContext();
    SparkSession session = spark.newSession();
    OutputTables.registerUpstream(session, spec, ledger, id);
    StepRun run = new StepRun(runId, resolved, session, ws, ws.attemptDir(runId, id, attempt), attempt,
        spec.directory(), spec.allUpstream(id), status -> listener.stepProgress(id, status), Optional.empty(),
        Optional.empty()); // prepare runs no collectives
    sc.setJobGroup(Attempts.jobGroup(runId, id), "Stagecraft run " + runId + " step " + id + " (prepare)", true);
    // The step's FAIR pool (weighted by its policy's priority): its own application waits for this.
    sc.setLocalProperty(Settings.SCHEDULER_POOL_PROPERTY,
        spec.policyOf(resolved).map(ResourcePolicy::pool).orElse(id));
    long start = System.nanoTime();
    Map<String, Object> values;
    try {
      values = kinds.get(resolved.kind()).prepare(run);
    } finally {
      sc.setLocalProperty(Settings.SCHEDULER_POOL_PROPERTY, null);
      sc.clearJobGroup();
    }
    if (!values.isEmpty()) {
      LOG.info("Prepared step '{}' of run '{}' in this application in {} s: {}", id, runId,
          Math.round(Attempts.seconds(start) * 10) / 10.0, values.keySet());
    }
    AtomicFiles.write(ws.fs(), file, Json.MAPPER.writeValueAsBytes(values));
  }
}
