package dev.stagecraft.jobs.engine;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.jobs.ledger.Fence;
import dev.stagecraft.jobs.ledger.Lease;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.Template;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepKind;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.SparkSession;

/**
 * Runs a workflow's steps on one SparkSession, in dependency order, independent steps concurrently (each in its own
 * FAIR scheduler pool), recording every state change in the run's ledger.
 *
 * <p>A call takes the lease, prepares the ledger ({@link LedgerPreparation}: a new run, or what a resume runs again),
 * schedules the steps ({@link StepScheduler}) and meters what the application costs ({@link CostMeter}). Each step's
 * attempt runs in this application ({@link InProcessAttempt}, where to read how a step runs and when its outputs are
 * committed) or, as {@link Placement} says, as a Spark application of its own ({@link LaunchedAttempt}).
 *
 * <p>A {@code run} holds the run's lease for its whole duration, so a second live {@code run} of the same id is
 * refused; a {@code step} holds that step's lease. Both refuse to start while the other kind is live.
 */
public final class Engine {
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
   * The run that launched this process as a step's own application: its run lease ({@code EPOCH:TOKEN}, the step
   * runs under that epoch and is fenced with it), and the file (a workspace URI) this application's usage goes to.
   */
  public record LaunchedBy(String lease, String usageFile, String preparedFile) {
    /** @param preparedFile what {@link StepKind#prepare} returned in the launching run (a workspace URI), or null */
    public LaunchedBy {
      requireNonNull(lease, "lease is null");
      requireNonNull(usageFile, "usageFile is null");
      if (!lease.matches("\\d+:.+")) {
        throw StagecraftException.user("Invalid parent lease '%s' (expected EPOCH:TOKEN)", lease);
      }
    }

    /** {@code EPOCH:TOKEN} of {@code lease}, as a launched step is given it. */
    static String of(Lease lease) {
      return lease.epoch() + ":" + lease.token();
    }

    long epoch() {
      return Long.parseLong(lease.substring(0, lease.indexOf(':')));
    }
  }

  private final SparkSession spark;
  private final EngineListener listener;
  private final Placement placement;
  private final InProcessAttempt inProcess;
  private final LaunchedAttempt launched;

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
    requireNonNull(kinds, "kinds is null");
    this.listener = requireNonNull(listener, "listener is null");
    this.placement = requireNonNull(placement, "placement is null");
    requireNonNull(launcher, "launcher is null");
    if (!placement.ownApplication().isEmpty() && launcher.isEmpty()) {
      throw new IllegalArgumentException("Steps " + placement.ownApplication() + " run as their own applications, "
          + "but there is no launcher");
    }
    this.inProcess = new InProcessAttempt(spark, kinds, listener);
    this.launched = new LaunchedAttempt(spark, kinds, listener, launcher);
  }

  /** The workspace a workflow uses under these options: {@code --workspace}, else the file's, else the default. */
  public Workspace workspace(WorkflowSpec spec, Options options) {
    String location = options.workspace()
        .or(() -> spec.workspace().map(w -> Template.substitute(w,
            name -> StepTemplates.builtInOrParam(spec, options, name))))
        .orElse(Workspace.DEFAULT);
    return new Workspace(location, spark.sparkContext().hadoopConfiguration());
  }

  /**
   * Runs the workflow (or one step of it) and returns the final ledger. Step failures do not throw: they are in
   * the ledger ({@link RunLedger#status()}). Refusals (bad options, a live lease, unmet upstream steps) throw.
   */
  public RunLedger run(WorkflowSpec spec, Options options) {
    Workspace ws = workspace(spec, options);
    String runId = options.runId();
    Optional<String> only = options.onlyStep();
    only.ifPresent(s -> {
      if (spec.findStep(s).isEmpty()) {
        throw StagecraftException.user("Invalid step '%s': %s has no such step (expected one of: %s)", s,
            spec.source(), String.join(", ", spec.order()));
      }
    });
    ws.checkLedgerStore();

    String what = only.map(s -> "step '" + s + "' of run '" + runId + "'").orElse("run '" + runId + "'");
    Path leasePath = only.map(s -> ws.stepLease(runId, s)).orElse(ws.runLease(runId));
    String leaseName = only.map(s -> "step:" + s).orElse("run");
    try (Lease lease = Lease.acquire(ws.ledgerFs(), leasePath, leaseName, what, options.command(),
        options.leaseStaleAfter(), options.leaseHeartbeat())) {
      // After taking ours: of a run and a step racing to start, at least one sees the other.
      Fence fence = fenceOthers(Fence.of(lease), ws, spec, runId, only, options);
      LedgerStore store = new LedgerStore(ws).fenced(fence);
      RunLedger ledger = LedgerPreparation.prepare(spec, options, ws, store);
      List<String> toRun = only.map(List::of).orElseGet(() -> LedgerPreparation.notSucceeded(spec, ledger));
      List<String> kept = new ArrayList<>(spec.order());
      kept.removeAll(toRun);
      listener.runStarted(runId, ws, toRun, only.isPresent() ? List.of() : kept);
      StepScheduler scheduler = new StepScheduler(spark, listener, this::runAttempt);
      String parentLease = LaunchedBy.of(lease);
      RunLedger result;
      if (only.isPresent() && options.launchedBy().isEmpty()) {
        result = scheduler.execute(new RunContext(spec, options, ws, store, parentLease, CostMeter.off()), toRun);
      } else {
        result = CostMeter.metered(spark.sparkContext(), spec, options, ws, inProcess.profilePolicies(),
            meter -> scheduler.execute(new RunContext(spec, options, ws, store, parentLease, meter), toRun));
      }
      listener.runFinished(result);
      return result;
    }
  }

  /** Runs one attempt of one step, here or as its own application. Never throws for a step failure. */
  private void runAttempt(RunContext call, StepConfig step) {
    if (placement.ownApplication(step.id()) && call.options().launchedBy().isEmpty()) {
      launched.run(call, step);
    } else {
      inProcess.run(call, step);
    }
  }

  /**
   * Refuses to start while a conflicting lease is live: a step's call, while the whole run is live (unless this
   * process is the step's own application, launched under that run's lease: then it is fenced by that lease's
   * epoch too); a whole run, while one of its steps is. A conflicting lease whose holder exited or went stale is
   * retired, and its new epoch joins this call's fence, so that holder can commit nothing if it wakes up.
   */
  private static Fence fenceOthers(Fence fence, Workspace ws, WorkflowSpec spec, String runId, Optional<String> only,
      Options options) {
    Duration stale = options.leaseStaleAfter();
    if (only.isPresent()) {
      Path runLease = ws.runLease(runId);
      Optional<LaunchedBy> parent = options.launchedBy();
      if (parent.isPresent()) {
        return fence.claiming("run", parent.get().epoch(), runLease);
      }
      Optional<Long> retired = Lease.retire(ws.ledgerFs(), runLease, "Cannot start step '" + only.get() + "' of run '"
          + runId + "': the whole run is live in another process", stale);
      return retired.map(epoch -> fence.claiming("run", epoch, runLease)).orElse(fence);
    }
    Fence result = fence;
    for (StepConfig s : spec.steps()) {
      Path stepLease = ws.stepLease(runId, s.id());
      Optional<Long> retired = Lease.retire(ws.ledgerFs(), stepLease, "Cannot start run '" + runId + "': its step '"
          + s.id() + "' is live in another process", stale);
      if (retired.isPresent()) {
        result = result.claiming("step:" + s.id(), retired.get(), stepLease);
      }
    }
    return result;
  }
}
