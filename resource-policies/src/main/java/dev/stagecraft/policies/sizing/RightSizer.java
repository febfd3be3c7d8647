package dev.stagecraft.policies.sizing;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.ResourcePolicy.Allocation;
import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.spi.SizingTraits;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * Right-sizing from run history ({@code sizing: auto}): per step, the executor count, task GPU fraction and market
 * that meet the step's deadline at the least expected cost, with a safety margin. Pure: no Spark, no files.
 *
 * <p>The model, from the newest earlier run of the step (n₀ executors alive on average, wall time T₀, u = busy
 * executor-seconds ÷ T₀ executors busy on average):
 *
 * <ul>
 *   <li>time with n executors: T(n) = T₀ · u ÷ min(n, p), where p, the parallelism the step can use, is u when its
 *       executors were idle more than 10% of the time (more executors would only idle too) and unbounded when they
 *       were busy (the step was short of executors). Below p, the busy work spreads over fewer executors.
 *   <li>T₀ is scaled by this run's input rows (what its upstream steps wrote) over that run's: task time per row.
 *   <li>target: T(n) · margin ≤ the deadline; without a deadline, T(n) ≤ T₀ (no slower than last time).
 *   <li>cost on demand: n · price · T(n), which grows with n once n ≥ u: the smallest n that meets the target is the
 *       cheapest. If none up to the limit does, the limit, and the reason says the deadline is at risk.
 *   <li>spot, for steps that resume from a known checkpoint interval ({@code train}) or re-run lost tasks
 *       ({@code infer}, {@code sql}, {@code load}), as their kinds say ({@code StepKind#sizing}): expected time T(n) + (T(n) ÷ MTBP) · (lost work + restart), where a preemption
 *       loses half a checkpoint interval on average (idempotent steps: half the step, their tasks restart). Spot only
 *       if the deadline absorbs one whole preemption (T(n) + lost + restart, times the margin) and its expected cost
 *       is lower.
 *   <li>task GPUs: a step whose tasks may share a GPU ({@code infer}) and used its GPUs less than half the time packs
 *       twice as many tasks per GPU (down to 1/8).
 * </ul>
 */
public final class RightSizer {
  /** Busy share of executor time above which a step counts as short of executors rather than of parallelism. */
  static final double SATURATED = 0.9;

  /** Spot risk and timing: how often spot capacity is lost, and how long a restart takes. */
  public record SpotRisk(double meanSecondsBetweenPreemptions, double restartSeconds) {}

  private final PriceCatalog prices;
  private final SpotRisk risk;
  private final double margin;

  public RightSizer(PriceCatalog prices, SpotRisk risk, double margin) {
    this.prices = requireNonNull(prices, "prices is null");
    this.risk = requireNonNull(risk, "risk is null");
    if (margin < 1) {
      throw new IllegalArgumentException("Invalid safety margin: " + margin + " (expected >= 1)");
    }
    this.margin = margin;
  }

  /** The policy as written, with the reason why nothing was sized. */
  public static SizingDecision asWritten(String step, ResourcePolicy policy, String reason) {
    return new SizingDecision(step, false, policy, executorsOf(policy), policy.task().gpus(), policy.market(), reason,
        Map.of());
  }

  private static int executorsOf(ResourcePolicy p) {
    return p.allocation().dynamic() ? p.allocation().max() : p.allocation().executors();
  }

  /** Most executors sizing may ask for: a dynamic policy's max, else four times the policy's count. */
  static int limit(ResourcePolicy p) {
    return p.allocation().dynamic() ? Math.max(1, p.allocation().max()) : Math.max(1, 4 * p.allocation().executors());
  }

  public SizingDecision decide(SizingRequest req) {
    ResourcePolicy policy = req.policy();
    if (req.history().isEmpty()) {
      return asWritten(req.step(), policy, "no earlier succeeded run of step '" + req.step() + "' with a cost "
          + "report in this workspace: policy '" + policy.name() + "' as written");
    }
    StepObservation last = req.history().get(0);
    if (last.busyExecutorSeconds() + last.idleExecutorSeconds() <= 0) {
      return asWritten(req.step(), policy, "run '" + last.runId() + "' recorded no executor time for step '"
          + req.step() + "' (not metered): policy '" + policy.name() + "' as written");
    }
    Map<String, Object> n = new LinkedHashMap<>();
    n.put("history_run", last.runId());
    n.put("history_seconds", round(last.seconds()));
    n.put("history_executors", round(last.executors()));
    n.put("history_busy_executors", round(last.busyExecutors()));
    n.put("history_idle_executor_seconds", round(last.idleExecutorSeconds()));
    // task time per input row: the step's time scales with its input (the rows its upstream steps wrote)
    double scale = 1;
    if (last.inputRows() > 0) {
      n.put("history_input_rows", last.inputRows());
      n.put("history_task_seconds_per_1k_input_rows", round(last.taskSeconds() / last.inputRows() * 1000));
      if (req.inputRows() > 0) {
        scale = req.inputRows() / last.inputRows();
        n.put("input_rows", req.inputRows());
        n.put("input_scale", round(scale));
      }
    }
    last.deadlineSeconds().ifPresent(d -> n.put("history_deadline_seconds", d));
    double used = Math.max(last.busyExecutors(), 1e-9);
    double busyShare = last.busyExecutorSeconds() / (last.busyExecutorSeconds() + last.idleExecutorSeconds());
    double parallelism = busyShare >= SATURATED ? Double.POSITIVE_INFINITY : used;
    n.put("history_busy_share", round(busyShare));
    int limit = limit(policy);
    double base = last.seconds() * scale;
    double target = req.deadlineSeconds().map(d -> d / margin).orElse(base);
    n.put("target_seconds", round(target));
    n.put("safety_margin", margin);
    n.put("executor_limit", limit);

    int floor = gangFloor(policy, req.traits().gangTasks());
    if (floor > 1) {
      n.put("gang_tasks", req.traits().gangTasks());
      n.put("executor_floor", floor);
    }
    limit = Math.max(limit, floor);
    int chosen = limit;
    boolean meets = false;
    for (int k = floor; k <= limit; k++) {
      if (time(base, used, parallelism, k) <= target * (1 + 1e-9)) {
        chosen = k;
        meets = true;
        break;
      }
    }
    double t = time(base, used, parallelism, chosen);
    n.put("expected_seconds", round(t));

    double taskGpus = policy.task().gpus();
    String gpuNote = "";
    if (req.traits().gpuSharing() && policy.usesGpus() && last.gpuUtilisation().isPresent()
        && last.gpuUtilisation().get() < 0.5 && taskGpus > 0.125) {
      n.put("history_gpu_utilisation", round(last.gpuUtilisation().get()));
      double packed = Math.max(0.125, taskGpus / 2);
      gpuNote = String.format(Locale.ROOT, "; GPU use %.2f < 0.5: task GPUs %s -> %s", last.gpuUtilisation().get(),
          fmt(taskGpus), fmt(packed));
      taskGpus = packed;
    }

    ResourcePolicy.Executor ex = policy.executor();
    double onDemandHour = prices.hourly(ex.cores(), ex.memoryMib() + ex.memoryOverheadMib(), ex.gpus(), ex.gpuType(),
        Market.ON_DEMAND);
    double spotHour = prices.hourly(ex.cores(), ex.memoryMib() + ex.memoryOverheadMib(), ex.gpus(), ex.gpuType(),
        Market.SPOT);
    double onDemandCost = chosen * onDemandHour * t / 3600;
    n.put("expected_cost_on_demand", round6(onDemandCost));

    Market market = Market.ON_DEMAND;
    String marketNote;
    double expectedCost = onDemandCost;
    SizingTraits traits = req.traits();
    boolean checkpoints = traits.checkpoints();
    if (!checkpoints && traits.recovery() != SizingTraits.Recovery.RERUNS_LOST_TASKS) {
      marketNote = "on demand: a '" + req.kind() + "' step " + (traits.recovery()
          == SizingTraits.Recovery.RESUMES_FROM_CHECKPOINT ? "whose checkpoint interval is not known yet"
          : "without checkpoints or idempotent tasks") + " would lose all its work to a preemption";
    } else {
      double lost = checkpoints ? Math.min(traits.checkpointSeconds().get(), t) : t;
      double worst = t + lost + risk.restartSeconds();
      double mtbp = risk.meanSecondsBetweenPreemptions();
      double preemptions = Double.isInfinite(mtbp) ? 0 : t / mtbp;
      double spotSeconds = t + preemptions * (lost / 2 + risk.restartSeconds());
      double spotCost = chosen * spotHour * spotSeconds / 3600;
      n.put("spot_lost_seconds_per_preemption", round(lost));
      n.put("spot_restart_seconds", risk.restartSeconds());
      n.put("spot_expected_preemptions", round6(preemptions));
      n.put("expected_cost_spot", round6(spotCost));
      n.put("seconds_with_one_preemption", round(worst));
      boolean absorbs = req.deadlineSeconds().map(d -> worst * margin <= d).orElse(true);
      if (!absorbs) {
        marketNote = String.format(Locale.ROOT, "on demand: the deadline (%.0f s) cannot absorb a preemption "
            + "(%.0f s with one, times margin %.2f)", req.deadlineSeconds().get(), worst, margin);
      } else if (spotCost < onDemandCost) {
        market = Market.SPOT;
        expectedCost = spotCost;
        marketNote = String.format(Locale.ROOT, "spot: expected %.6f vs %.6f on demand, %.2f preemptions expected",
            spotCost, onDemandCost, preemptions);
      } else {
        marketNote = String.format(Locale.ROOT, "on demand: expected %.6f vs %.6f on spot", onDemandCost, spotCost);
      }
    }
    n.put("expected_cost", round6(expectedCost));

    String sizeNote;
    double prevExecutors = last.executors();
    if (!meets) {
      sizeNote = String.format(Locale.ROOT, "%d executor(s), the limit: expected %.1f s misses the target %.1f s "
          + "(deadline at risk)", chosen, t, target);
    } else if (last.missedDeadline()) {
      sizeNote = String.format(Locale.ROOT, "%d executor(s) (was %.1f): the last run took %.1f s, over its deadline "
          + "%.1f s; expected %.1f s", chosen, prevExecutors, last.seconds(), last.deadlineSeconds().get(), t);
    } else if (chosen < prevExecutors - 0.5) {
      sizeNote = String.format(Locale.ROOT, "%d executor(s) (was %.1f): only %.1f were busy on average (%.0f idle "
          + "executor-seconds); expected %.1f s within the target %.1f s", chosen, prevExecutors,
          last.busyExecutors(), last.idleExecutorSeconds(), t, target);
    } else {
      sizeNote = String.format(Locale.ROOT, "%d executor(s) (was %.1f): the fewest that meet the target %.1f s "
          + "(expected %.1f s)", chosen, prevExecutors, target, t);
    }
    double cost = expectedCost;
    String budgetNote = req.budget().map(b -> cost > b
        ? String.format(Locale.ROOT, "; over budget: expected %.6f > %.6f", cost, b)
        : String.format(Locale.ROOT, "; within budget %.6f", b)).orElse("");
    req.budget().ifPresent(b -> n.put("budget", b));

    ResourcePolicy sized = resize(policy, chosen, taskGpus, market);
    return new SizingDecision(req.step(), true, sized, chosen, taskGpus, market,
        sizeNote + "; " + marketNote + gpuNote + budgetNote, n);
  }

  /**
   * Fewest executors of the policy's shape that hold {@code tasks} tasks at once (a barrier stage needs all its slots
   * together), by CPUs and by GPUs; 1 when there is no gang.
   */
  static int gangFloor(ResourcePolicy p, int tasks) {
    if (tasks <= 0) {
      return 1;
    }
    int perExecutor = p.executor().cores() / Math.max(1, p.task().cpus());
    if (p.task().gpus() > 0) {
      perExecutor = Math.min(perExecutor, (int) Math.floor(p.executor().gpus() / p.task().gpus() + 1e-9));
    }
    return Math.max(1, (int) Math.ceil(tasks / (double) Math.max(1, perExecutor)));
  }

  /** T(n) = T₀ · u ÷ min(n, p), T₀ scaled by the input rows. */
  static double time(double base, double used, double parallelism, int executors) {
    return base * used / Math.min(executors, parallelism);
  }

  /** The policy with the chosen count (static executors, or a dynamic max), task GPUs and market. */
  static ResourcePolicy resize(ResourcePolicy p, int executors, double taskGpus, Market market) {
    Allocation a = p.allocation();
    Allocation sized = a.dynamic()
        ? new Allocation(a.mode(), a.executors(), Math.min(a.min(), executors), executors,
            Math.min(a.initial(), executors), a.idleTimeout())
        : new Allocation(a.mode(), executors, a.min(), a.max(), a.initial(), a.idleTimeout());
    return new ResourcePolicy(p.name(), p.executor(), new ResourcePolicy.Task(p.task().cpus(), taskGpus), sized,
        market, p.pool(), p.priority(), p.rapids(), p.collectives());
  }

  private static double round(double v) {
    return Math.round(v * 1000) / 1000.0;
  }

  private static double round6(double v) {
    return Math.round(v * 1e6) / 1e6;
  }

  private static String fmt(double v) {
    return v == Math.rint(v) ? String.valueOf((long) v) : String.valueOf(v);
  }
}
