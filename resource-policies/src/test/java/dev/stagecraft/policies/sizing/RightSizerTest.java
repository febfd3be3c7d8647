package dev.stagecraft.policies.sizing;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.policies.Policies;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.ResourcePolicy.Allocation;
import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.spi.SizingTraits;
import dev.stagecraft.spi.SizingTraits.Recovery;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class RightSizerTest {
  /** Spot lost every 6 hours on average; 2 minutes to restart. */
  private final RightSizer sizer =
      new RightSizer(PriceCatalog.builtIn(), new RightSizer.SpotRisk(6 * 3600, 120), 1.25);

  private static ResourcePolicy staticCpu(int executors) {
    ResourcePolicy etl = Policies.BUILT_IN.get("cpu-etl");
    return new ResourcePolicy("etl4", etl.executor(), etl.task(),
        new Allocation(Allocation.Mode.STATIC, executors, 0, 0, 0, Duration.ofSeconds(60)), Market.ON_DEMAND,
        "etl", 1, etl.rapids(), etl.collectives());
  }

  private static StepObservation seen(double seconds, double busy, double idle, Double deadline) {
    return new StepObservation("r1", seconds, busy, idle, busy, 1_000_000, 0, Optional.empty(),
        Optional.ofNullable(deadline));
  }

  /** What the kinds say of their steps (TrainStep and InferStep in their own modules). */
  private static final SizingTraits INFER = new SizingTraits(Recovery.RERUNS_LOST_TASKS, Optional.empty(), 0, true);
  private static final SizingTraits TRAIN_WITHOUT_CHECKPOINTS = SizingTraits.UNKNOWN;

  private static SizingTraits traits(String kind) {
    return switch (kind) {
      case "infer" -> INFER;
      case "sql", "load" -> SizingTraits.IDEMPOTENT;
      default -> TRAIN_WITHOUT_CHECKPOINTS;
    };
  }

  private static SizingRequest request(String kind, ResourcePolicy p, Double deadline, List<StepObservation> h) {
    return new SizingRequest("s", kind, traits(kind), p, Optional.ofNullable(deadline), Optional.empty(), h, 0);
  }

  @Test
  void idleExecutorsInHistoryMeanFewerExecutors() {
    // 4 executors for 100 s, but only 120 executor-seconds busy: 1.2 executors were used on average
    SizingDecision d = sizer.decide(request("sql", staticCpu(4), null, List.of(seen(100, 120, 280, null))));
    assertThat(d.fromHistory()).isTrue();
    assertThat(d.executors()).isEqualTo(2); // no deadline: no slower than last time (1 would take 120 s)
    assertThat(d.policy().allocation().executors()).isEqualTo(2);
    assertThat(d.reason()).startsWith("2 executor(s) (was 4.0): only 1.2 were busy on average (280 idle "
        + "executor-seconds)");
    assertThat(d.numbers()).containsEntry("history_busy_executors", 1.2).containsEntry("expected_seconds", 100.0);

    // with a deadline of 200 s (target 160 s after the 1.25 margin), one executor is enough and cheaper
    SizingDecision loose = sizer.decide(request("sql", staticCpu(4), 200.0, List.of(seen(100, 120, 280, null))));
    assertThat(loose.executors()).isEqualTo(1);
    assertThat(loose.numbers()).containsEntry("expected_seconds", 120.0).containsEntry("target_seconds", 160.0);
  }

  @Test
  void aMissedDeadlineMeansMoreExecutors() {
    // 2 executors busy all the time for 100 s against a 60 s deadline: short of executors
    ResourcePolicy dyn = Policies.BUILT_IN.get("gpu-inference"); // dynamic 0..4
    SizingDecision d = sizer.decide(request("infer", dyn, 60.0, List.of(seen(100, 200, 0, 60.0))));
    // target 60 / 1.25 = 48 s: 200 executor-seconds over 5 would do, but the policy allows 4 at most
    assertThat(d.executors()).isEqualTo(4);
    assertThat(d.reason()).contains("the limit: expected 50.0 s misses the target 48.0 s (deadline at risk)");
    SizingDecision wider = sizer.decide(request("infer", withMax(dyn, 8), 60.0, List.of(seen(100, 200, 0, 60.0))));
    assertThat(wider.executors()).isEqualTo(5);
    assertThat(wider.policy().allocation().max()).isEqualTo(5);
    assertThat(wider.reason()).startsWith("5 executor(s) (was 2.0): the last run took 100.0 s, over its deadline "
        + "60.0 s; expected 40.0 s");
  }

  @Test
  void missingHistoryFallsBackToThePolicyWithAReason() {
    ResourcePolicy p = staticCpu(3);
    SizingDecision d = sizer.decide(request("sql", p, 100.0, List.of()));
    assertThat(d.fromHistory()).isFalse();
    assertThat(d.policy()).isEqualTo(p);
    assertThat(d.executors()).isEqualTo(3);
    assertThat(d.reason()).isEqualTo("no earlier succeeded run of step 's' with a cost report in this workspace: "
        + "policy 'etl4' as written");
    assertThat(d.toMap()).containsEntry("mode", "policy as written").containsEntry("market", "on_demand");
  }

  @Test
  void spotOnlyWhereItIsSafeAndTheDeadlineAbsorbsAPreemption() {
    ResourcePolicy gpu = Policies.BUILT_IN.get("gpu-training"); // static 2, on demand
    List<StepObservation> h = List.of(seen(3600, 7200, 0, null));
    // training with a 10-minute checkpoint interval and a loose deadline: spot is cheaper in expectation
    SizingTraits checkpointed = new SizingTraits(Recovery.RESUMES_FROM_CHECKPOINT, Optional.of(600.0), 0, false);
    SizingDecision ckpt = sizer.decide(new SizingRequest("s", "train", checkpointed, gpu, Optional.of(3 * 3600.0),
        Optional.empty(), h, 0));
    assertThat(ckpt.market()).isEqualTo(Market.SPOT);
    assertThat(ckpt.policy().market()).isEqualTo(Market.SPOT);
    assertThat((double) ckpt.numbers().get("expected_cost_spot"))
        .isLessThan((double) ckpt.numbers().get("expected_cost_on_demand"));
    assertThat(ckpt.numbers()).containsEntry("spot_lost_seconds_per_preemption", 600.0);
    // the same step without checkpoints: a preemption would lose everything
    SizingDecision none = sizer.decide(request("train", gpu, 3 * 3600.0, h));
    assertThat(none.market()).isEqualTo(Market.ON_DEMAND);
    assertThat(none.reason()).contains("on demand: a 'train' step without checkpoints or idempotent tasks would lose "
        + "all its work");
    // checkpoints whose interval is not known yet (none given in seconds, no run measured it): the same
    SizingDecision unknown = sizer.decide(new SizingRequest("s", "train", new SizingTraits(
        Recovery.RESUMES_FROM_CHECKPOINT, Optional.empty(), 0, false), gpu, Optional.of(3 * 3600.0), Optional.empty(),
        h, 0));
    assertThat(unknown.market()).isEqualTo(Market.ON_DEMAND);
    assertThat(unknown.reason()).contains("whose checkpoint interval is not known yet would lose all its work");
    // checkpoints, but a deadline that one preemption (3600 + 600 + 120 s, × 1.25) would break
    SizingDecision tight = sizer.decide(new SizingRequest("s", "train", checkpointed, gpu, Optional.of(5000.0),
        Optional.empty(), h, 0));
    assertThat(tight.market()).isEqualTo(Market.ON_DEMAND);
    assertThat(tight.reason()).contains("on demand: the deadline (5000 s) cannot absorb a preemption (4320 s with "
        + "one, times margin 1.25)");
  }

  @Test
  void underusedGpusPackMoreTasksPerGpu() {
    ResourcePolicy p = Policies.BUILT_IN.get("gpu-inference"); // task GPUs 0.25
    StepObservation o = new StepObservation("r0", 100, 100, 0, 100, 5000, 0, Optional.of(0.3), Optional.empty());
    SizingDecision d = sizer.decide(request("infer", p, null, List.of(o)));
    assertThat(d.taskGpus()).isEqualTo(0.125);
    assertThat(d.policy().task().gpus()).isEqualTo(0.125);
    assertThat(d.reason()).contains("GPU use 0.30 < 0.5: task GPUs 0.25 -> 0.125");
  }

  @Test
  void aBarrierStepKeepsEnoughExecutorsForAllItsWorkers() {
    // gpu-training: 1 GPU per executor and per task; 2 workers. History: both executors idle most of the time.
    ResourcePolicy gpu = Policies.BUILT_IN.get("gpu-training");
    List<StepObservation> h = List.of(seen(100, 40, 160, null));
    SizingDecision gang = sizer.decide(new SizingRequest("fit", "train", new SizingTraits(Recovery.STARTS_OVER,
        Optional.empty(), 2, false), gpu, Optional.empty(), Optional.empty(), h, 0));
    assertThat(gang.executors()).isEqualTo(2);
    assertThat(gang.numbers()).containsEntry("executor_floor", 2);
    SizingDecision loose = sizer.decide(request("train", gpu, null, h));
    assertThat(loose.executors()).isEqualTo(1); // the same history without a gang: 0.4 executors were busy
  }

  @Test
  void twiceTheInputRowsNeedTwiceTheExecutorsForTheSameDeadline() {
    // last run: 1M input rows in 100 s on 2 busy executors (200 task-seconds); this run reads 2M rows, deadline 125 s
    StepObservation o = new StepObservation("r0", 100, 200, 0, 200, 1_000_000, 1_000_000, Optional.empty(),
        Optional.empty());
    ResourcePolicy p = withMax(Policies.BUILT_IN.get("gpu-inference"), 8);
    SizingDecision same = sizer.decide(new SizingRequest("s", "infer", INFER, p, Optional.of(125.0), Optional.empty(),
        List.of(o), 1_000_000));
    assertThat(same.executors()).isEqualTo(2); // 100 s × 1.25 ≤ 125 s
    SizingDecision twice = sizer.decide(new SizingRequest("s", "infer", INFER, p, Optional.of(125.0), Optional.empty(),
        List.of(o), 2_000_000));
    assertThat(twice.executors()).isEqualTo(4);
    assertThat(twice.numbers()).containsEntry("input_scale", 2.0)
        .containsEntry("history_task_seconds_per_1k_input_rows", 0.2).containsEntry("expected_seconds", 100.0);
  }

  private static ResourcePolicy withMax(ResourcePolicy p, int max) {
    Allocation a = p.allocation();
    return new ResourcePolicy(p.name(), p.executor(), p.task(),
        new Allocation(a.mode(), a.executors(), a.min(), max, a.initial(), a.idleTimeout()), p.market(), p.pool(),
        p.priority(), p.rapids(), p.collectives());
  }
}
