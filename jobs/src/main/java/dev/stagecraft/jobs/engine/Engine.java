package dev.stagecraft.jobs.engine;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.Template;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.spark.SparkPolicies;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepKind;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorCompletionService;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;
import org.apache.spark.sql.SparkSession;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs a workflow's steps on one SparkSession, in dependency order, independent steps concurrently (each in its own
 * FAIR scheduler pool), recording every state change in the run's ledger.
 *
 * <p>How a step runs — the one place to read: {@link #runStep}. It marks the step RUNNING (a new attempt), gives the
 * kind a {@link StepRun} whose outputs go to {@code runs/RUN/steps/STEP/attempt-N/}, and on success commits them by
 * writing their URIs into the ledger (one atomic write) before it removes older attempts. A failed attempt's folder is
 * deleted and never named by the ledger, so no reader can see a partial output, and a re-run never adds rows to an
 * earlier attempt's output.
 *
 * <p>A {@code run} holds the run's lease for its whole duration, so a second live {@code run} of the same id is
 * refused; a {@code step} holds that step's lease. Both refuse to start while the other kind is live.
 */
public final class Engine {
  private static final Logger LOG = LoggerFactory.getLogger(Engine.class);

  /**
   * How to run.
   *
   * @param runId the run id (see {@link Workspace#checkRunId})
   * @param resume continue an existing run: re-run only steps that did not succeed (or changed since)
   * @param workspace overrides the workflow's {@code workspace}
   * @param overrides {@code --set} values for the workflow's params
   * @param onlyStep run just this step of the run (its upstream steps must have succeeded)
   * @param command what the user ran, shown to anyone refused by this run's lease
   * @param launchedBy set when this process is a step's own application, launched by the run that holds the run's
   *     lease ({@link StepLauncher})
   */
  public record Options(
      String runId,
      boolean resume,
      Optional<String> workspace,
      Map<String, String> overrides,
      Optional<String> onlyStep,
      String command,
      int maxParallel,
      Duration leaseStaleAfter,
      Duration leaseHeartbeat,
      Optional<LaunchedBy> launchedBy) {
    public Options {
      Workspace.checkRunId(runId);
      requireNonNull(workspace, "workspace is null");
      overrides = Map.copyOf(overrides);
      requireNonNull(onlyStep, "onlyStep is null");
      requireNonNull(command, "command is null");
      requireNonNull(launchedBy, "launchedBy is null");
      if (maxParallel < 1) {
        throw new IllegalArgumentException("maxParallel must be at least 1");
      }
    }

    public static Options run(String runId) {
      return new Options(runId, false, Optional.empty(), Map.of(), Optional.empty(), "run", 4,
          Lease.DEFAULT_STALE_AFTER, Lease.DEFAULT_HEARTBEAT, Optional.empty());
    }

    public Options withResume() {
      return new Options(runId, true, workspace, overrides, onlyStep, command, maxParallel, leaseStaleAfter,
          leaseHeartbeat, launchedBy);
    }

    public Options withWorkspace(String uri) {
      return new Options(runId, resume, Optional.of(uri), overrides, onlyStep, command, maxParallel, leaseStaleAfter,
          leaseHeartbeat, launchedBy);
    }

    public Options withOverrides(Map<String, String> values) {
      return new Options(runId, resume, workspace, values, onlyStep, command, maxParallel, leaseStaleAfter,
          leaseHeartbeat, launchedBy);
    }

    public Options withOnlyStep(String step) {
      return new Options(runId, resume, workspace, overrides, Optional.of(step), command, maxParallel,
          leaseStaleAfter, leaseHeartbeat, launchedBy);
    }

    public Options withCommand(String cmd) {
      return new Options(runId, resume, workspace, overrides, onlyStep, cmd, maxParallel, leaseStaleAfter,
          leaseHeartbeat, launchedBy);
    }

    /** This process runs {@code onlyStep} as the step's own application, launched by the run {@code by} names. */
    public Options withLaunchedBy(LaunchedBy by) {
      return new Options(runId, resume, workspace, overrides, onlyStep, command, maxParallel, leaseStaleAfter,
          leaseHeartbeat, Optional.of(by));
    }

    public Options withLease(Duration staleAfter, Duration heartbeat) {
      return new Options(runId, resume, workspace, overrides, onlyStep, command, maxParallel, staleAfter, heartbeat,
          launchedBy);
    }
  }

  /**
   * The run that launched this process as a step's own application: the token of its run lease, and the file (a
   * workspace URI) this application's usage goes to.
   */
  public record LaunchedBy(String leaseToken, String usageFile, String preparedFile) {
    /** @param preparedFile what {@link StepKind#prepare} returned in the launching run (a workspace URI), or null */
    public LaunchedBy {
      requireNonNull(leaseToken, "leaseToken is null");
      requireNonNull(usageFile, "usageFile is null");
    }
  }

  private final SparkSession spark;
  private final StepKinds kinds;
  private final Placement placement;
  private final Optional<StepLauncher> launcher;
  /** The lease of the run in progress: the token launched steps run under. */
  private volatile String runLeaseToken;
  /** Usage files of the applications launched by the run in progress, merged into its cost report. */
  private final List<Path> launchedUsage = java.util.Collections.synchronizedList(new ArrayList<>());
  private final EngineListener listener;
  /** One profile per policy for the application's life: a new profile would mean new executors. */
  private final Map<String, Optional<org.apache.spark.resource.ResourceProfile>> profiles =
      new java.util.concurrent.ConcurrentHashMap<>();
  private final Map<Integer, ResourcePolicy> profilePolicies = new java.util.concurrent.ConcurrentHashMap<>();
  /** The cost meter of the run in progress (an engine runs one workflow call at a time). */
  private volatile dev.stagecraft.policies.cost.spark.CostListener meter;

  public Engine(SparkSession spark, StepKinds kinds, EngineListener listener) {
    this(spark, kinds, listener, Placement.IN_PROCESS, Optional.empty());
  }

  /**
   * An engine that runs the steps {@code placement} names as their own applications, through {@code launcher}.
   *
   * @throws IllegalArgumentException if the placement names steps and there is no launcher
   */
  public Engine(SparkSession spark, StepKinds kinds, EngineListener listener, Placement placement,
      Optional<StepLauncher> launcher) {
    this.spark = requireNonNull(spark, "spark is null");
    this.kinds = requireNonNull(kinds, "kinds is null");
    this.listener = requireNonNull(listener, "listener is null");
    this.placement = requireNonNull(placement, "placement is null");
    this.launcher = requireNonNull(launcher, "launcher is null");
    if (!placement.ownApplication().isEmpty() && launcher.isEmpty()) {
      throw new IllegalArgumentException("Steps " + placement.ownApplication() + " run as their own applications, "
          + "but there is no launcher");
    }
  }

  /** The workspace a workflow uses under these options: {@code --workspace}, else the file's, else the default. */
  public Workspace workspace(WorkflowSpec spec, Options options) {
    String location = options.workspace()
        .or(() -> spec.workspace().map(w -> Template.substitute(w, name -> builtInOrParam(spec, options, name))))
        .orElse(Workspace.DEFAULT);
    return new Workspace(location, spark.sparkContext().hadoopConfiguration());
  }

  /**
   * Runs the workflow (or one step of it) and returns the final ledger. Step failures do not throw: they are in
   * the ledger ({@link RunLedger#status()}). Refusals (bad options, a live lease, unmet upstream steps) throw.
   */
  public RunLedger run(WorkflowSpec spec, Options options) {
    Workspace ws = workspace(spec, options);
    LedgerStore store = new LedgerStore(ws);
    String runId = options.runId();
    Optional<String> only = options.onlyStep();
    only.ifPresent(s -> {
      if (spec.findStep(s).isEmpty()) {
        throw StagecraftException.user("Invalid step '%s': %s has no such step (expected one of: %s)", s,
            spec.source(), String.join(", ", spec.order()));
      }
    });

    String what = only.map(s -> "step '" + s + "' of run '" + runId + "'").orElse("run '" + runId + "'");
    refuseIfLive(ws, spec, runId, only, options);
    Path leasePath = only.map(s -> ws.stepLease(runId, s)).orElse(ws.runLease(runId));
    try (Lease lease = Lease.acquire(ws.fs(), leasePath, what, options.command(), options.leaseStaleAfter(),
        options.leaseHeartbeat())) {
      // Re-check after taking ours: a run and a step racing to start both see the other.
      refuseIfLive(ws, spec, runId, only, options);
      runLeaseToken = lease.token();
      launchedUsage.clear();
      RunLedger ledger = prepare(spec, options, ws, store);
      List<String> toRun = only.map(List::of).orElseGet(() -> notSucceeded(spec, ledger));
      List<String> kept = new ArrayList<>(spec.order());
      kept.removeAll(toRun);
      listener.runStarted(runId, ws, toRun, only.isPresent() ? List.of() : kept);
      RunLedger result;
      if (only.isPresent() && options.launchedBy().isEmpty()) {
        result = execute(spec, options, ws, store, toRun);
      } else {
        result = metered(spec, runId, ws, options, () -> execute(spec, options, ws, store, toRun));
      }
      listener.runFinished(result);
      return result;
    }
  }

  /**
   * Runs {@code body} with a cost meter on the SparkContext and writes {@code runs/RUN/cost.json} and
   * {@code cost.png} afterwards (also when steps failed: their executors cost money too).
   */
  private RunLedger metered(WorkflowSpec spec, String runId, Workspace ws, Options options,
      java.util.function.Supplier<RunLedger> body) {
    Optional<LaunchedBy> launchedBy = options.launchedBy();
    SparkContext sc = spark.sparkContext();
    List<ResourcePolicy> used = spec.steps().stream().map(spec::policyOf).flatMap(Optional::stream).distinct()
        .toList();
    ResourcePolicy base = sc.isLocal() ? dev.stagecraft.policies.Policies.BUILT_IN.get("local")
        : launchedBy.isPresent() ? launchedBase(spec, options.onlyStep().orElseThrow(), sc)
        : SparkPolicies.basePolicy(used).orElse(dev.stagecraft.policies.cost.spark.CostListener.defaultBase(sc));
    dev.stagecraft.policies.cost.spark.CostListener m = new dev.stagecraft.policies.cost.spark.CostListener(sc, runId, base);
    profilePolicies.forEach(m::profilePolicy);
    sc.addSparkListener(m);
    meter = m;
    try {
      return body.get();
    } finally {
      meter = null;
      // Task-end events are delivered asynchronously: let the bus drain before the books close.
      try {
        sc.listenerBus().waitUntilEmpty(10_000);
      } catch (java.util.concurrent.TimeoutException e) {
        LOG.warn("Spark's listener bus did not drain in 10 s: the cost report of run '{}' may miss the last tasks",
            runId);
      }
      sc.removeSparkListener(m);
      m.stop();
      try {
        dev.stagecraft.policies.cost.Usage usage = m.usage();
        if (launchedBy.isPresent()) { // a step's own application: the launching run reports its cost
          CostFiles.writeUsage(ws, new Path(launchedBy.get().usageFile()), usage);
        } else {
          for (Path f : List.copyOf(launchedUsage)) {
            Optional<dev.stagecraft.policies.cost.Usage> other = CostFiles.readUsage(ws, f);
            if (other.isPresent()) {
              usage = usage.with(f.getName().replaceFirst("\\.usage\\.json$", ""), other.get());
            } else {
              LOG.warn("The cost report of run '{}' misses a launched application: it left no usage file {}", runId,
                  f);
            }
          }
          CostFiles.write(ws, runId, dev.stagecraft.policies.cost.CostReport.compute(
              dev.stagecraft.policies.cost.PriceCatalog.builtIn(), usage));
        }
      } catch (RuntimeException e) {
        LOG.warn("Cannot write the cost report of run '{}': {}", runId, e.toString());
      }
    }
  }

  private void refuseIfLive(Workspace ws, WorkflowSpec spec, String runId, Optional<String> only, Options options) {
    Optional<Lease.Holder> runHolder =
        Lease.liveHolder(ws.fs(), ws.runLease(runId), options.leaseStaleAfter());
    long now = System.currentTimeMillis();
    if (only.isPresent()) {
      runHolder.filter(h -> !options.launchedBy().map(LaunchedBy::leaseToken).equals(Optional.of(h.token())))
          .ifPresent(h -> {
        throw StagecraftException.user("Cannot start step '%s' of run '%s': the whole run is live in another "
            + "process: %s", only.get(), runId, h.describe(now));
      });
    } else {
      for (StepConfig s : spec.steps()) {
        Lease.liveHolder(ws.fs(), ws.stepLease(runId, s.id()), options.leaseStaleAfter()).ifPresent(h -> {
          throw StagecraftException.user("Cannot start run '%s': its step '%s' is live in another process: %s",
              runId, s.id(), h.describe(now));
        });
      }
    }
  }

  /** Creates or updates the ledger for this call and returns it. */
  private RunLedger prepare(WorkflowSpec spec, Options options, Workspace ws, LedgerStore store) {
    String runId = options.runId();
    String now = now();
    return store.update(runId, current -> {
      if (current == null) {
        if (options.resume()) {
          throw StagecraftException.user("Cannot resume run '%s': it has no ledger in workspace %s (drop --resume to "
              + "start it)", runId, ws.uri());
        }
      } else if (options.onlyStep().isEmpty() && !options.resume()) {
        long done = current.steps().values().stream().filter(r -> r.status() == StepStatus.SUCCEEDED).count();
        throw StagecraftException.user("Cannot start run '%s': it already exists in workspace %s (%s, %d of %d steps "
            + "succeeded). Add --resume to re-run the steps that did not succeed, or choose another --run-id.",
            runId, ws.uri(), current.status(), done, current.steps().size());
      } else if (!current.workflow().equals(spec.name())) {
        throw StagecraftException.user("Cannot continue run '%s': it belongs to workflow '%s', not '%s' (%s)", runId,
            current.workflow(), spec.name(), spec.source());
      }
      Map<String, String> params = effectiveParams(spec, current, options);
      Map<String, StepRecord> steps = new LinkedHashMap<>();
      for (StepConfig s : spec.steps()) {
        List<String> up = List.copyOf(spec.upstream().get(s.id()));
        StepRecord old = current == null ? null : current.steps().get(s.id());
        steps.put(s.id(), old == null ? StepRecord.pending(s.kind(), up) : old.withShape(s.kind(), up));
      }
      RunLedger base = current != null
          ? current.withParams(params, now).withSteps(steps, now)
          : new RunLedger(RunLedger.CURRENT_VERSION, runId, spec.name(), spec.source(), ws.uri(), RunStatus.RUNNING,
              now, now, params, steps);
      if (options.onlyStep().isPresent()) {
        String step = options.onlyStep().get();
        for (String up : spec.allUpstream(step)) {
          StepRecord r = base.step(up);
          if (r.status() != StepStatus.SUCCEEDED) {
            throw StagecraftException.user("Cannot run step '%s' of run '%s': upstream step '%s' is %s (expected "
                + "SUCCEEDED; run it first)", step, runId, up, r.status());
          }
        }
        return base.withStatus(RunStatus.RUNNING, now);
      }
      // A whole run: anything not kept goes back to PENDING so the ledger shows what is left to do.
      Set<String> rerun = new LinkedHashSet<>(stepsToRerun(spec, base, params, ws));
      Map<String, StepRecord> reset = new LinkedHashMap<>();
      base.steps().forEach((id, r) -> reset.put(id, rerun.contains(id) ? r.reset() : r));
      return base.withSteps(reset, now).withStatus(RunStatus.RUNNING, now);
    });
  }

  /** The steps a whole run still has to run, as the (prepared) ledger says. */
  private static List<String> notSucceeded(WorkflowSpec spec, RunLedger ledger) {
    List<String> out = new ArrayList<>();
    for (String id : spec.order()) {
      if (ledger.step(id).status() != StepStatus.SUCCEEDED) {
        out.add(id);
      }
    }
    return out;
  }

  /**
   * Steps to run again: every step that did not succeed, that changed since it succeeded (its substituted
   * configuration has another fingerprint), whose committed outputs are gone, or whose upstream step runs again.
   */
  private List<String> stepsToRerun(WorkflowSpec spec, RunLedger ledger, Map<String, String> params, Workspace ws) {
    List<String> out = new ArrayList<>();
    Set<String> rerun = new LinkedHashSet<>();
    for (String id : spec.order()) {
      StepRecord r = ledger.step(id);
      String reason = null;
      if (r.status() != StepStatus.SUCCEEDED) {
        reason = "";
      } else if (spec.upstream().get(id).stream().anyMatch(rerun::contains)) {
        reason = "an upstream step runs again";
      } else if (!outputsExist(ws, r)) {
        reason = "its committed output is gone";
      } else {
        StepConfig resolved = resolve(spec, spec.step(id), ledger, params, ws, ledger.runId());
        if (!fingerprint(resolved).equals(r.fingerprint())) {
          reason = "its configuration changed since it succeeded";
        }
      }
      if (reason != null) {
        if (!reason.isEmpty()) {
          LOG.info("Step '{}' succeeded before but runs again: {}", id, reason);
        }
        rerun.add(id);
        out.add(id);
      }
    }
    return out;
  }

  private static boolean outputsExist(Workspace ws, StepRecord r) {
    try {
      for (OutputRecord o : r.outputs().values()) {
        if (!ws.fs().exists(new Path(o.uri()))) {
          return false;
        }
      }
      return true;
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot check outputs in workspace %s: %s", ws.uri(), e.getMessage());
    }
  }

  private RunLedger execute(WorkflowSpec spec, Options options, Workspace ws, LedgerStore store, List<String> toRun) {
    String runId = options.runId();
    ExecutorService pool = Executors.newFixedThreadPool(Math.min(options.maxParallel(), Math.max(1, toRun.size())),
        r -> {
          Thread t = new Thread(r, "stagecraft-step");
          t.setDaemon(true);
          return t;
        });
    ExecutorCompletionService<String> done = new ExecutorCompletionService<>(pool);
    Set<String> waiting = new LinkedHashSet<>(toRun);
    Set<String> running = new LinkedHashSet<>();
    try {
      while (!waiting.isEmpty() || !running.isEmpty()) {
        RunLedger ledger = store.read(runId).orElseThrow();
        boolean changed = true;
        while (changed) { // a skip can make a downstream step skippable in the same pass
          changed = false;
          for (String id : List.copyOf(waiting)) {
            Set<String> ups = spec.upstream().get(id);
            RunLedger l = ledger;
            Optional<String> failedUp = ups.stream()
                .filter(u -> l.step(u).status() == StepStatus.FAILED || l.step(u).status() == StepStatus.SKIPPED)
                .findFirst();
            if (failedUp.isPresent()) {
              waiting.remove(id);
              String reason = "upstream step '" + failedUp.get() + "' "
                  + l.step(failedUp.get()).status().name().toLowerCase(java.util.Locale.ROOT);
              ledger = store.update(runId, x -> x.withStep(id, r -> r.skipped(reason), now()));
              listener.stepFinished(id, ledger.step(id));
              changed = true;
            } else if (ups.stream().allMatch(u -> l.step(u).status() == StepStatus.SUCCEEDED)) {
              waiting.remove(id);
              running.add(id);
              done.submit(() -> {
                runStep(spec, options, ws, store, spec.step(id));
                return id;
              });
            }
          }
        }
        if (running.isEmpty()) {
          if (!waiting.isEmpty()) {
            // Only reachable if the ledger changed under us (another process reset an upstream step).
            throw new StagecraftException(ErrorCategory.INTERNAL, "Cannot schedule steps " + waiting
                + ": their upstream steps neither succeeded nor failed");
          }
          break;
        }
        Future<String> f = done.take();
        running.remove(f.get());
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      spark.sparkContext().cancelAllJobs();
      throw new StagecraftException(ErrorCategory.INTERNAL, "Interrupted while running " + runId, e);
    } catch (ExecutionException e) {
      throw new StagecraftException(ErrorCategory.INTERNAL, "Step scheduler failed: " + e.getCause(), e.getCause());
    } finally {
      pool.shutdownNow();
    }
    return store.update(runId, l -> l.withStatus(l.statusFromSteps(), now()));
  }

  /** Runs one attempt of one step: the whole lifecycle of a step lives here. Never throws for a step failure. */
  private void runStep(WorkflowSpec spec, Options options, Workspace ws, LedgerStore store, StepConfig step) {
    if (placement.ownApplication(step.id()) && options.launchedBy().isEmpty()) {
      runLaunched(spec, options, ws, store, step);
      return;
    }
    String runId = options.runId();
    String id = step.id();
    StepKind kind = kinds.get(step.kind());
    RunLedger ledger = store.update(runId, l -> l.withStep(id, r -> r.started(now()), now()));
    int attempt = ledger.step(id).attempts();
    Path attemptDir = ws.attemptDir(runId, id, attempt);
    String group = "stagecraft/" + runId + "/" + id;
    SparkContext sc = spark.sparkContext();
    long start = System.nanoTime();
    StepRun run = null;
    try {
      deleteIfExists(ws, attemptDir); // a crashed attempt with this number may have left files
      StepConfig resolved = resolve(spec, step, ledger, ledger.params(), ws, runId);
      SparkSession session = spark.newSession();
      registerUpstreamTables(session, spec, ledger, id);
      sc.setJobGroup(group, "Stagecraft run " + runId + " step " + id, true);
      // Deadlines and sizing (issue #7): the policy as written, or as right-sized from earlier runs.
      Optional<Double> deadline = StepSizing.deadlineSeconds(spec, id, ledger.created(), Instant.now());
      Optional<dev.stagecraft.policies.sizing.SizingDecision> sizing = StepSizing.decide(spec, resolved, ws, ledger, deadline);
      Optional<ResourcePolicy> policy =
          sizing.map(dev.stagecraft.policies.sizing.SizingDecision::policy).or(() -> spec.policyOf(step));
      // FAIR pools: one per policy (weighted by its priority when the CLI wrote the allocation file), else one per
      // step, so concurrent steps share executors instead of queueing FIFO.
      sc.setLocalProperty("spark.scheduler.pool", policy.map(ResourcePolicy::pool).orElse(id));
      Optional<org.apache.spark.resource.ResourceProfile> profile = policy.flatMap(this::profileFor);
      if (policy.isPresent() && sc.getConf().get("spark.plugins", "").contains(SparkPolicies.RAPIDS_PLUGIN)) {
        SparkPolicies.stepSqlConf(policy.get()).forEach((k, v) -> session.conf().set(k, v));
      }
      listener.stepStarted(id, kind.name(), attempt, group);
      if (meter != null) {
        meter.stepStarted(id);
      }
      run = new StepRun(runId, resolved, session, ws, attemptDir, attempt, spec.directory(), spec.allUpstream(id),
          status -> listener.stepProgress(id, status), profile);
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
      if (options.launchedBy().map(LaunchedBy::preparedFile).isPresent()) {
        run.prepared(readPrepared(ws, new Path(options.launchedBy().get().preparedFile())));
      }
      kind.run(run);
      double secs = seconds(start);
      if (deadline.isPresent()) {
        run.detail("deadline", StepSizing.deadlineOutcome(deadline.get(), secs));
      }
      Map<String, OutputRecord> outputs = run.outputs();
      Map<String, Double> metrics = run.metrics();
      Map<String, Object> details = run.details();
      String fingerprint = fingerprint(resolved);
      // The commit point: the ledger names the attempt's outputs.
      RunLedger after = store.update(runId,
          l -> l.withStep(id, r -> r.succeeded(now(), secs, outputs, metrics, fingerprint, details), now()));
      removeOtherAttempts(ws, runId, id, attempt);
      listener.stepFinished(id, after.step(id));
    } catch (Throwable t) {
      double secs = seconds(start);
      if (t instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
      String message = oneLine(t);
      ErrorCategory category = StagecraftException.categoryOf(t);
      // INFO with the trace: the console already says it in one line; --verbose shows this too.
      LOG.info("Step '{}' of run '{}' failed: {}", id, runId, message, t);
      List<Path> written = new ArrayList<>(List.of(attemptDir));
      if (run != null) {
        written.addAll(run.extraDirs());
      }
      for (Path dir : written) {
        try {
          deleteIfExists(ws, dir);
        } catch (RuntimeException cleanup) {
          LOG.warn("Cannot delete the failed attempt's folder {} (the ledger never names it): {}", dir,
              cleanup.toString());
        }
      }
      Map<String, Object> details = run == null ? Map.of() : run.details();
      RunLedger after = store.update(runId,
          l -> l.withStep(id, r -> r.failed(now(), secs, message, category.name(), details), now()));
      listener.stepFinished(id, after.step(id));
    } finally {
      if (meter != null) {
        meter.stepFinished(id);
      }
      sc.setLocalProperty("spark.scheduler.pool", null);
      sc.clearJobGroup();
      if (options.launchedBy().isEmpty()) { // a launched attempt's scratch belongs to the run that launched it
        deleteScratch(ws, runId, id, attempt);
      }
    }
  }

  private static void deleteScratch(Workspace ws, String runId, String step, int attempt) {
    Path scratch = ws.scratchDir(runId, step, attempt);
    try {
      deleteIfExists(ws, scratch);
    } catch (RuntimeException e) {
      LOG.warn("Cannot delete the intermediate data of step '{}' attempt {} ({}): {}", step, attempt, scratch,
          e.toString());
    }
  }

  /**
   * Runs a step as its own Spark application ({@link Placement}): the launched {@code stagecraft step} records the
   * attempt in the ledger as any step does; this adds how the application ended (exit code, log) and records a
   * failure if the application ended without recording one. Never throws for a step failure.
   */
  private void runLaunched(WorkflowSpec spec, Options options, Workspace ws, LedgerStore store, StepConfig step) {
    String runId = options.runId();
    String id = step.id();
    int attempt = store.read(runId).orElseThrow().step(id).attempts() + 1;
    String name = id + "-attempt-" + attempt;
    Path usage = new Path(ws.runDir(runId), "applications/" + name + ".usage.json");
    Path log = new Path(ws.runDir(runId), "applications/" + name + ".log");
    Path prepared = new Path(ws.runDir(runId), "applications/" + name + ".prepared.json");
    listener.stepStarted(id, step.kind(), attempt, "stagecraft/" + runId + "/" + id);
    if (meter != null) {
      meter.stepStarted(id);
    }
    long start = System.nanoTime();
    StepLauncher.Launched launched = null;
    Throwable failure = null;
    boolean preparing = true;
    try {
      RunLedger ledger = store.read(runId).orElseThrow();
      StepConfig resolved = resolve(spec, step, ledger, ledger.params(), ws, runId);
      prepareLaunch(spec, ws, ledger, resolved, attempt, prepared);
      preparing = false;
      // The application is sized before it starts: with sizing: auto, the policy right-sized from earlier runs (the
      // launched attempt records the same decision in the ledger).
      Optional<ResourcePolicy> policy = StepSizing.decide(spec, resolved, ws, ledger,
          StepSizing.deadlineSeconds(spec, id, ledger.created(), Instant.now()))
          .map(dev.stagecraft.policies.sizing.SizingDecision::policy).or(() -> spec.policyOf(step));
      launched = launcher.orElseThrow().launch(new StepLauncher.Request(spec, step, policy, runId, ws, runLeaseToken,
          usage, log, prepared), status -> listener.stepProgress(id, status));
      launchedUsage.add(usage);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      failure = e;
    } catch (Exception e) {
      failure = e;
    } finally {
      if (meter != null) {
        meter.stepFinished(id);
      }
      deleteScratch(ws, runId, id, attempt);
    }
    double secs = seconds(start);
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
    String failed = f == null ? null : preparing ? oneLine(f)
        : "Cannot run step '" + id + "' as its own Spark application: " + oneLine(f);
    RunLedger after = store.update(runId, ledger -> ledger.withStep(id, r -> {
      StepRecord attempted = r.attempts() >= attempt ? r : r.started(now());
      if (f != null) {
        return attempted.failed(now(), secs, failed, StagecraftException.categoryOf(f).name(),
            Map.of("application", app));
      }
      if (attempted.status() == StepStatus.SUCCEEDED || attempted.status() == StepStatus.FAILED) {
        return attempted.withDetail("application", app);
      }
      return attempted.failed(now(), secs, "The Spark application of step '" + id + "' exited with code "
          + l.exitCode() + " before it recorded a result (its output: " + l.log() + ")",
          ErrorCategory.EXTERNAL.name(), attempted.withDetail("application", app).details());
    }, now()));
    listener.stepFinished(id, after.step(id));
  }

  /**
   * The executors of a step's own application follow the step's policy, at the market its launcher chose (the
   * policy's, or right-sized from history: {@link SparkSubmitLauncher#MARKET}).
   */
  private static ResourcePolicy launchedBase(WorkflowSpec spec, String step, SparkContext sc) {
    ResourcePolicy p = spec.policyOf(spec.step(step)).orElseGet(() -> dev.stagecraft.policies.cost.spark.CostListener
        .defaultBase(sc));
    ResourcePolicy.Market m = ResourcePolicy.Market.valueOf(sc.getConf().get(SparkSubmitLauncher.MARKET,
        p.market().name()));
    return m == p.market() ? p : new ResourcePolicy(p.name(), p.executor(), p.task(), p.allocation(), m, p.pool(),
        p.priority(), p.rapids());
  }

  /**
   * Runs the step kind's {@link StepKind#prepare} here, in the workflow's application, on its default executors and
   * in the step's job group, and writes what it returns to {@code file} for the launched attempt.
   */
  private void prepareLaunch(WorkflowSpec spec, Workspace ws, RunLedger ledger, StepConfig resolved, int attempt,
      Path file) throws Exception {
    String runId = ledger.runId();
    String id = resolved.id();
    SparkContext sc = spark.sparkContext();
    SparkSession session = spark.newSession();
    registerUpstreamTables(session, spec, ledger, id);
    StepRun run = new StepRun(runId, resolved, session, ws, ws.attemptDir(runId, id, attempt), attempt,
        spec.directory(), spec.allUpstream(id), status -> listener.stepProgress(id, status), Optional.empty());
    sc.setJobGroup("stagecraft/" + runId + "/" + id, "Stagecraft run " + runId + " step " + id + " (prepare)", true);
    // The step's FAIR pool (weighted by its policy's priority): its own application waits for this.
    sc.setLocalProperty("spark.scheduler.pool", spec.policyOf(resolved).map(ResourcePolicy::pool).orElse(id));
    long start = System.nanoTime();
    Map<String, Object> values;
    try {
      values = kinds.get(resolved.kind()).prepare(run);
    } finally {
      sc.setLocalProperty("spark.scheduler.pool", null);
      sc.clearJobGroup();
    }
    if (!values.isEmpty()) {
      LOG.info("Prepared step '{}' of run '{}' in this application in {} s: {}", id, runId,
          Math.round(seconds(start) * 10) / 10.0, values.keySet());
    }
    dev.stagecraft.fs.AtomicFiles.write(ws.fs(), file, Json.MAPPER.writeValueAsBytes(values));
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> readPrepared(Workspace ws, Path file) {
    try {
      Optional<byte[]> bytes = dev.stagecraft.fs.AtomicFiles.read(ws.fs(), file);
      return bytes.isEmpty() ? Map.of() : Json.MAPPER.readValue(bytes.get(), Map.class);
    } catch (java.io.IOException e) {
      throw StagecraftException.external(e, "Cannot read %s (what the launching run prepared for this step): %s", file,
          e.getMessage());
    }
  }

  /**
   * The policy's resource profile, made once per application; empty where the step runs on the default profile: the
   * policy matches the application's executors, or local mode (which supports no custom profiles; what it ignores is
   * logged once per policy).
   */
  private Optional<org.apache.spark.resource.ResourceProfile> profileFor(ResourcePolicy policy) {
    return profiles.computeIfAbsent(policy.name(), n -> {
      SparkContext sc = spark.sparkContext();
      if (sc.isLocal()) {
        LOG.info("Local mode: policy '{}' runs in this JVM; it ignores {} (pool '{}' still applies)", n,
            String.join(", ", SparkPolicies.ignoredInLocalMode(policy)), policy.pool());
        return Optional.empty();
      }
      Map<String, String> conf = new LinkedHashMap<>();
      for (scala.Tuple2<String, String> kv : sc.getConf().getAll()) {
        conf.put(kv._1(), kv._2());
      }
      SparkPolicies.ProfileKind kind = SparkPolicies.profileKind(policy, conf);
      if (kind == SparkPolicies.ProfileKind.DEFAULT) {
        return Optional.empty();
      }
      Optional<String> script = Optional.ofNullable(conf.get("spark.executor.resource.gpu.discoveryScript"));
      org.apache.spark.resource.ResourceProfile rp = SparkPolicies.profile(policy, kind, script);
      profilePolicies.put(rp.id(), policy);
      if (meter != null) {
        meter.profilePolicy(rp.id(), policy);
      }
      LOG.info("Policy '{}': {} resource profile {} ({})", n, kind.name().toLowerCase(java.util.Locale.ROOT), rp.id(),
          rp);
      return Optional.of(rp);
    });
  }

  private static void registerUpstreamTables(SparkSession session, WorkflowSpec spec, RunLedger ledger, String id) {
    for (String up : spec.allUpstream(id)) {
      boolean first = true;
      for (Map.Entry<String, OutputRecord> o : ledger.step(up).outputs().entrySet()) {
        if (o.getValue().isTable()) {
          String view = first ? up : up + "_" + o.getKey();
          o.getValue().read(session).createOrReplaceTempView(view);
          first = false;
        }
      }
    }
  }

  /** The step with every {@code ${…}} replaced: built-ins, params, and upstream steps' committed outputs. */
  static StepConfig resolve(
      WorkflowSpec spec, StepConfig step, RunLedger ledger, Map<String, String> params, Workspace ws, String runId) {
    Map<String, Object> fields = new LinkedHashMap<>();
    step.fields().forEach((k, v) -> fields.put(k, substitute(v, name -> {
      String[] out = Template.stepOutput(name);
      if (out != null) {
        OutputRecord o = ledger.step(out[0]).outputs().get(out[1]);
        if (o == null) {
          throw step.invalid(k, "${" + name + "} has no committed value (step '" + out[0] + "' is "
              + ledger.step(out[0]).status() + ")");
        }
        return o.uri();
      }
      return switch (name) {
        case "run_id" -> runId;
        case "workflow_dir" -> spec.directory();
        case "workspace" -> ws.uri();
        default -> {
          String v2 = params.get(name);
          if (v2 == null) {
            throw step.invalid(k, "unknown parameter ${" + name + "}");
          }
          yield v2;
        }
      };
    })));
    return step.withFields(fields);
  }

  @SuppressWarnings("unchecked")
  private static Object substitute(Object value, java.util.function.UnaryOperator<String> resolve) {
    if (value instanceof String s) {
      return Template.substitute(s, resolve);
    }
    if (value instanceof List<?> list) {
      List<Object> out = new ArrayList<>();
      list.forEach(v -> out.add(substitute(v, resolve)));
      return out;
    }
    if (value instanceof Map<?, ?> map) {
      Map<Object, Object> out = new LinkedHashMap<>();
      ((Map<Object, Object>) map).forEach((k, v) -> out.put(k, substitute(v, resolve)));
      return out;
    }
    return value;
  }

  private static String builtInOrParam(WorkflowSpec spec, Options options, String name) {
    return switch (name) {
      case "run_id" -> options.runId();
      case "workflow_dir" -> spec.directory();
      default -> options.overrides().getOrDefault(name, spec.params().getOrDefault(name, "${" + name + "}"));
    };
  }

  /** Workflow params, then those recorded by earlier calls of this run, then {@code --set}. */
  private static Map<String, String> effectiveParams(WorkflowSpec spec, RunLedger current, Options options) {
    Map<String, String> params = new LinkedHashMap<>(spec.params());
    if (current != null) {
      current.params().forEach((k, v) -> {
        if (params.containsKey(k)) {
          params.put(k, v);
        }
      });
    }
    for (Map.Entry<String, String> e : options.overrides().entrySet()) {
      if (!spec.params().containsKey(e.getKey())) {
        throw StagecraftException.user("Invalid --set %s=%s: %s has no parameter '%s' (expected one of: %s)",
            e.getKey(), e.getValue(), spec.source(), e.getKey(), String.join(", ", new TreeSet<>(spec.params().keySet())));
      }
      params.put(e.getKey(), e.getValue());
    }
    return params;
  }

  static String fingerprint(StepConfig resolved) {
    try {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      md.update(resolved.kind().getBytes(StandardCharsets.UTF_8));
      md.update(Json.MAPPER.writeValueAsBytes(sorted(resolved.fields())));
      return HexFormat.of().formatHex(md.digest()).substring(0, 16);
    } catch (NoSuchAlgorithmException | IOException e) {
      throw new IllegalStateException(e);
    }
  }

  @SuppressWarnings("unchecked")
  private static Object sorted(Object v) {
    if (v instanceof Map<?, ?> m) {
      Map<String, Object> out = new TreeMap<>();
      ((Map<Object, Object>) m).forEach((k, x) -> out.put(String.valueOf(k), sorted(x)));
      return out;
    }
    if (v instanceof List<?> l) {
      return l.stream().map(Engine::sorted).toList();
    }
    return v;
  }

  private static void removeOtherAttempts(Workspace ws, String runId, String step, int keep) {
    try {
      if (!ws.fs().exists(ws.stepDir(runId, step))) {
        return; // the step wrote only outside its folder (e.g. a model bundle under models/)
      }
      FileStatus[] children = ws.fs().listStatus(ws.stepDir(runId, step), p -> p.getName().startsWith("attempt-"));
      for (FileStatus c : children) {
        if (!c.getPath().getName().equals("attempt-" + keep)) {
          ws.fs().delete(c.getPath(), true);
        }
      }
    } catch (IOException e) {
      LOG.warn("Cannot remove earlier attempts of step '{}' (harmless: the ledger names only attempt-{}): {}", step,
          keep, e.toString());
    }
  }

  private static void deleteIfExists(Workspace ws, Path dir) {
    try {
      ws.fs().delete(dir, true);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot delete %s: %s", dir, e.getMessage());
    }
  }

  /** The first line of the most useful message in {@code t}'s chain, at most 1000 characters. */
  static String oneLine(Throwable t) {
    Throwable best = StagecraftException.find(t).<Throwable>map(e -> e).orElse(t);
    String m = best.getMessage();
    m = m == null || m.isBlank() ? best.getClass().getName() : StagecraftException.firstLine(m);
    return m.length() > 1000 ? m.substring(0, 1000) + "…" : m;
  }

  private static double seconds(long startNanos) {
    return Math.round((System.nanoTime() - startNanos) / 1e6) / 1000.0;
  }

  static String now() {
    return Instant.now().toString();
  }
}
