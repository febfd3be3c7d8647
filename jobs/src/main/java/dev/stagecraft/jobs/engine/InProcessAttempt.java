package dev.stagecraft.jobs.engine;

import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.ledger.Json;
import dev.stagecraft.jobs.ledger.LeaseLostException;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.sizing.SizingDecision;
import dev.stagecraft.policies.spark.SparkPolicies;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepKind;
import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;
import org.apache.spark.resource.ResourceProfile;
import org.apache.spark.sql.SparkSession;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.Tuple2;

/**
 * Runs one attempt of a step in this Spark application — the one place to read how a step runs: {@link #run}.
 *
 * <p>It marks the step RUNNING (a new attempt), gives the kind a {@link StepRun} whose outputs go to
 * {@code runs/RUN/steps/STEP/attempt-N/}, and on success commits them by writing their URIs into the ledger (one
 * atomic write) before it removes older attempts. A failed attempt's folder is deleted and never named by the ledger,
 * so no reader can see a partial output, and a re-run never adds rows to an earlier attempt's output.
 *
 * <p>The step runs in its own SparkSession (its upstream steps' tables registered as views), in its own Spark job
 * group, in the FAIR pool of its policy (or of its own), on the policy's resource profile — made once per policy for
 * the application's life, since a new profile would mean new executors.
 */
final class InProcessAttempt {
  private static final Logger LOG = LoggerFactory.getLogger(InProcessAttempt.class);

  private final SparkSession spark;
  private final StepKinds kinds;
  private final EngineListener listener;
  /** One profile per policy for the application's life: a new profile would mean new executors. */
  private final Map<String, Optional<ResourceProfile>> profiles = new ConcurrentHashMap<>();
  private final Map<Integer, ResourcePolicy> profilePolicies = new ConcurrentHashMap<>();

  InProcessAttempt(SparkSession spark, StepKinds kinds, EngineListener listener) {
    this.spark = spark;
    this.kinds = kinds;
    this.listener = listener;
  }

  /** The policy of each resource profile made so far (for a new cost meter). */
  Map<Integer, ResourcePolicy> profilePolicies() {
    return profilePolicies;
  }

  /**
   * Runs one attempt of one step: the whole lifecycle of a step lives here. Never throws for a step failure.
   *
   * @throws LeaseLostException if another process took the run over: nothing of this attempt was committed
   */
  void run(RunContext call, StepConfig step) {
    WorkflowSpec spec = call.spec();
    Engine.Options options = call.options();
    Workspace ws = call.ws();
    LedgerStore store = call.store();
    CostMeter meter = call.meter();
    String runId = call.runId();
    String id = step.id();
    StepKind kind = kinds.get(step.kind());
    RunLedger ledger = store.update(runId, l -> l.withStep(id, r -> r.started(RunLedger.now()), RunLedger.now()));
    int attempt = ledger.step(id).attempts();
    Path attemptDir = ws.attemptDir(runId, id, attempt);
    String group = Attempts.jobGroup(runId, id);
    SparkContext sc = spark.sparkContext();
    long start = System.nanoTime();
    StepRun run = null;
    boolean fenced = false;
    try {
      Attempts.deleteIfExists(ws, attemptDir); // a crashed attempt with this number may have left files
      StepConfig resolved = StepTemplates.resolve(spec, step, ledger, ledger.params(), ws, runId);
      SparkSession session = spark.newSession();
      OutputTables.registerUpstream(session, spec, ledger, id);
      sc.setJobGroup(group, "Stagecraft run " + runId + " step " + id, true);
      // Deadlines and sizing: the policy as written, or as right-sized from earlier runs.
      Optional<Double> deadline = StepSizing.deadlineSeconds(spec, id, ledger.created(), Instant.now());
      Optional<SizingDecision> sizing = StepSizing.decide(spec, kind, resolved, ws, ledger, deadline);
      Optional<ResourcePolicy> policy = sizing.map(SizingDecision::policy).or(() -> spec.policyOf(step));
      // FAIR pools: one per policy (weighted by its priority when the CLI wrote the allocation file), else one per
      // step, so concurrent steps share executors instead of queueing FIFO.
      sc.setLocalProperty(Settings.SCHEDULER_POOL_PROPERTY, policy.map(ResourcePolicy::pool).orElse(id));
      Optional<ResourceProfile> profile = policy.flatMap(p -> profileFor(p, meter));
      if (policy.isPresent() && sc.getConf().get(Settings.PLUGINS_CONF, "").contains(SparkPolicies.RAPIDS_PLUGIN)) {
        SparkPolicies.stepSqlConf(policy.get()).forEach((k, v) -> session.conf().set(k, v));
      }
      listener.stepStarted(id, kind.name(), attempt, group);
      meter.stepStarted(id);
      run = new StepRun(runId, resolved, session, ws, attemptDir, attempt, spec.directory(), spec.allUpstream(id),
          status -> listener.stepProgress(id, status), profile,
          policy.flatMap(p -> p.collectives().integrity()));
      if (policy.isPresent()) {
        Map<String, Object> resources = new LinkedHashMap<>();
        resources.put("policy", policy.get().name());
        resources.put("pool", policy.get().pool());
        resources.put("resource_profile", profile.map(p -> (Object) p.id()).orElse("default"));
        resources.put("application_id", sc.applicationId());
        run.detail("resources", resources);
      }
      if (sizing.isPresent()) {
        run.detail("sizing", sizing.get().toMap());
      }
      Optional<String> preparedFile = options.launchedBy().map(Engine.LaunchedBy::preparedFile);
      if (preparedFile.isPresent()) {
        run.prepared(readPrepared(ws, new Path(preparedFile.get())));
      }
      kind.run(run);
      double secs = Attempts.seconds(start);
      if (deadline.isPresent()) {
        run.detail("deadline", StepSizing.deadlineOutcome(deadline.get(), secs));
      }
      Map<String, OutputRecord> outputs = run.outputs();
      Map<String, Double> metrics = run.metrics();
      Map<String, Object> details = run.details();
      String fingerprint = LedgerPreparation.fingerprint(resolved);
      // The commit point: the ledger names the attempt's outputs.
      RunLedger after = store.update(runId, l -> l.withStep(id,
          r -> r.succeeded(RunLedger.now(), secs, outputs, metrics, fingerprint, details), RunLedger.now()));
      Attempts.removeEarlierAttempts(ws, runId, id, attempt);
      listener.stepFinished(id, after.step(id));
    } catch (Throwable t) {
      Optional<LeaseLostException> lost = leaseLost(t).or(() -> leaseLost(store));
      if (lost.isPresent()) {
        // Another process holds the run now: it owns the ledger and all the ledger may name, so this one records
        // nothing and deletes nothing (its attempt folder is an earlier attempt to the new holder, who removes it).
        fenced = true;
        LOG.error("Step '{}' of run '{}' stops without committing: {}", id, runId, lost.get().getMessage());
        throw lost.get();
      }
      double secs = Attempts.seconds(start);
      if (t instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
      String message = Attempts.oneLine(t);
      ErrorCategory category = StagecraftException.categoryOf(t);
      // INFO with the trace: the console already says it in one line; --verbose shows this too.
      LOG.info("Step '{}' of run '{}' failed: {}", id, runId, message, t);
      List<Path> written = new ArrayList<>(List.of(attemptDir));
      if (run != null) {
        written.addAll(run.extraDirs());
      }
      for (Path dir : written) {
        try {
          Attempts.deleteIfExists(ws, dir);
        } catch (RuntimeException cleanup) {
          LOG.warn("Cannot delete the failed attempt's folder {} (the ledger never names it): {}", dir,
              cleanup.toString());
        }
      }
      Map<String, Object> details = run == null ? Map.of() : run.details();
      RunLedger after = store.update(runId, l -> l.withStep(id,
          r -> r.failed(RunLedger.now(), secs, message, category.name(), details), RunLedger.now()));
      listener.stepFinished(id, after.step(id));
    } finally {
      meter.stepFinished(id);
      sc.setLocalProperty(Settings.SCHEDULER_POOL_PROPERTY, null);
      sc.clearJobGroup();
      if (options.launchedBy().isEmpty() && !fenced) { // a launched attempt's scratch is the launching run's
        Attempts.deleteScratch(ws, runId, id, attempt);
      }
    }
  }

  /** The lease loss in {@code t}'s chain (a step kind may have wrapped it, Spark may have). */
  private static Optional<LeaseLostException> leaseLost(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c instanceof LeaseLostException l) {
        return Optional.of(l);
      }
    }
    return Optional.empty();
  }

  /** The loss of this process's lease, if it is lost (a step cancelled because of it fails with Spark's error). */
  private static Optional<LeaseLostException> leaseLost(LedgerStore store) {
    try {
      store.fence().checkHeld();
      return Optional.empty();
    } catch (LeaseLostException e) {
      return Optional.of(e);
    }
  }

  /** What the launching run's {@link StepKind#prepare} returned for this attempt (in a step's own application). */
  @SuppressWarnings("unchecked")
  private static Map<String, Object> readPrepared(Workspace ws, Path file) {
    try {
      Optional<byte[]> bytes = AtomicFiles.read(ws.fs(), file);
      return bytes.isEmpty() ? Map.of() : Json.MAPPER.readValue(bytes.get(), Map.class);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read %s (what the launching run prepared for this step): %s", file,
          e.getMessage());
    }
  }

  /**
   * The policy's resource profile, made once per application; empty where the step runs on the default profile: the
   * policy matches the application's executors, or local mode (which supports no custom profiles; what it ignores is
   * logged once per policy).
   */
  private Optional<ResourceProfile> profileFor(ResourcePolicy policy, CostMeter meter) {
    return profiles.computeIfAbsent(policy.name(), n -> {
      SparkContext sc = spark.sparkContext();
      if (sc.isLocal()) {
        LOG.info("Local mode: policy '{}' runs in this JVM; it ignores {} (pool '{}' still applies)", n,
            String.join(", ", SparkPolicies.ignoredInLocalMode(policy)), policy.pool());
        return Optional.empty();
      }
      Map<String, String> conf = new LinkedHashMap<>();
      for (Tuple2<String, String> kv : sc.getConf().getAll()) {
        conf.put(kv._1(), kv._2());
      }
      SparkPolicies.ProfileKind kind = SparkPolicies.profileKind(policy, conf);
      if (kind == SparkPolicies.ProfileKind.DEFAULT) {
        return Optional.empty();
      }
      Optional<String> script = Optional.ofNullable(conf.get(Settings.GPU_DISCOVERY_SCRIPT_CONF));
      ResourceProfile rp = SparkPolicies.profile(policy, kind, script);
      profilePolicies.put(rp.id(), policy);
      meter.profilePolicy(rp.id(), policy);
      LOG.info("Policy '{}': {} resource profile {} ({})", n, kind.name().toLowerCase(Locale.ROOT), rp.id(), rp);
      return Optional.of(rp);
    });
  }
}
