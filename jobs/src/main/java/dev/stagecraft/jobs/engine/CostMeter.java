package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.ledger.LeaseLostException;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.Policies;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.policies.cost.Usage;
import dev.stagecraft.policies.cost.spark.CostListener;
import dev.stagecraft.policies.spark.SparkPolicies;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The cost meter of one engine call: a {@link CostListener} on the SparkContext for the call's duration, told when each
 * step starts and ends and which policy each resource profile follows, and the usage files of the applications the
 * call launched ({@link LaunchedAttempt}). Afterwards it writes {@code runs/RUN/cost.json} and {@code cost.png}, or, in
 * a step's own application, the usage file the launching run merges into its report. A call that runs one step of a
 * run in the run's own application is not metered ({@link #off}).
 */
final class CostMeter {
  private static final Logger LOG = LoggerFactory.getLogger(CostMeter.class);

  /** Null when the call is not metered, and once it has ended. */
  private volatile CostListener listener;
  /** Usage files of the applications launched by the call, merged into its cost report. */
  private final List<Path> launchedUsage = Collections.synchronizedList(new ArrayList<>());

  private CostMeter(CostListener listener) {
    this.listener = listener;
  }

  /** A meter that records nothing. */
  static CostMeter off() {
    return new CostMeter(null);
  }

  /**
   * Runs {@code body} with a cost meter on the SparkContext and writes {@code runs/RUN/cost.json} and
   * {@code cost.png} afterwards (also when steps failed: their executors cost money too; not when the run's lease was
   * lost: the new holder writes the run's report).
   *
   * @param profilePolicies the policy of each resource profile this application made before the call
   */
  static RunLedger metered(SparkContext sc, WorkflowSpec spec, Engine.Options options, Workspace ws,
      Map<Integer, ResourcePolicy> profilePolicies, Function<CostMeter, RunLedger> body) {
    String runId = options.runId();
    Optional<Engine.LaunchedBy> launchedBy = options.launchedBy();
    List<ResourcePolicy> used = spec.steps().stream().map(spec::policyOf).flatMap(Optional::stream).distinct()
        .toList();
    ResourcePolicy base = sc.isLocal() ? Policies.BUILT_IN.get("local")
        : launchedBy.isPresent() ? launchedBase(spec, options.onlyStep().orElseThrow(), sc)
        : SparkPolicies.basePolicy(used).orElse(CostListener.defaultBase(sc));
    CostListener m = new CostListener(sc, runId, base);
    profilePolicies.forEach(m::profilePolicy);
    sc.addSparkListener(m);
    CostMeter meter = new CostMeter(m);
    boolean lost = false;
    try {
      return body.apply(meter);
    } catch (LeaseLostException e) {
      lost = true; // the run is another process's now: its report is that process's to write
      throw e;
    } finally {
      meter.listener = null; // a step thread still running after an interrupt no longer reports
      // Task-end events are delivered asynchronously: let the bus drain before the books close.
      try {
        sc.listenerBus().waitUntilEmpty(10_000);
      } catch (TimeoutException e) {
        LOG.warn("Spark's listener bus did not drain in 10 s: the cost report of run '{}' may miss the last tasks",
            runId);
      }
      sc.removeSparkListener(m);
      m.stop();
      if (!lost) {
        meter.report(m, ws, runId, launchedBy);
      }
    }
  }

  void stepStarted(String step) {
    CostListener l = listener;
    if (l != null) {
      l.stepStarted(step);
    }
  }

  void stepFinished(String step) {
    CostListener l = listener;
    if (l != null) {
      l.stepFinished(step);
    }
  }

  /** Executors of resource profile {@code profileId} follow {@code policy}. */
  void profilePolicy(int profileId, ResourcePolicy policy) {
    CostListener l = listener;
    if (l != null) {
      l.profilePolicy(profileId, policy);
    }
  }

  /** A step's own application will leave its usage in {@code usageFile}. */
  void launched(Path usageFile) {
    launchedUsage.add(usageFile);
  }

  /**
   * Writes the run's cost report — or, in a step's own application, its usage for the launching run to report. Never
   * throws: a run's result does not depend on its cost report.
   */
  private void report(CostListener stopped, Workspace ws, String runId, Optional<Engine.LaunchedBy> launchedBy) {
    try {
      Usage usage = stopped.usage();
      if (launchedBy.isPresent()) { // a step's own application: the launching run reports its cost
        CostFiles.writeUsage(ws, new Path(launchedBy.get().usageFile()), usage);
      } else {
        for (Path f : List.copyOf(launchedUsage)) {
          Optional<Usage> other = CostFiles.readUsage(ws, f);
          if (other.isPresent()) {
            usage = usage.with(f.getName().replaceFirst("\\.usage\\.json$", ""), other.get());
          } else {
            LOG.warn("The cost report of run '{}' misses a launched application: it left no usage file {}", runId,
                f);
          }
        }
        CostFiles.write(ws, runId, CostReport.compute(PriceCatalog.builtIn(), usage));
      }
    } catch (RuntimeException e) {
      LOG.warn("Cannot write the cost report of run '{}': {}", runId, e.toString());
    }
  }

  /**
   * The executors of a step's own application follow the step's policy, at the market its launcher chose (the
   * policy's, or right-sized from history: {@link Settings#EXECUTOR_MARKET_CONF}).
   */
  private static ResourcePolicy launchedBase(WorkflowSpec spec, String step, SparkContext sc) {
    ResourcePolicy p = spec.policyOf(spec.step(step)).orElseGet(() -> CostListener.defaultBase(sc));
    ResourcePolicy.Market m = ResourcePolicy.Market.valueOf(sc.getConf().get(Settings.EXECUTOR_MARKET_CONF,
        p.market().name()));
    return m == p.market() ? p : new ResourcePolicy(p.name(), p.executor(), p.task(), p.allocation(), m, p.pool(),
        p.priority(), p.rapids(), p.collectives());
  }
}
