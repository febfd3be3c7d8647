package dev.stagecraft.policies.sched;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.io.InputStream;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SimulatorTest {
  private static final double OD = 2.0;
  private static final double SPOT = 0.8;

  /** 1-minute ticks, no start-up delay, Spark's idle timeout raised to 10 min, checkpoints every 20 min. */
  private static SimConfig config(int gpus, double startup) {
    return new SimConfig(gpus, 60, OD, SPOT, startup, 600, 1200, 1.5);
  }

  private static SpotMarket always() {
    return SpotMarket.aligned(List.of(new SpotTrace("always", 60, new int[] {1, 1, 1})));
  }

  @Test
  void tinyTraceHasItsKnownOptimalCosts() {
    // two one-hour 1-GPU jobs two hours apart, deadlines 3 h after arrival, spot always there
    List<SimJob> jobs = List.of(new SimJob(0, "a", 0, 3600, 1, 10_800), new SimJob(1, "b", 7200, 3600, 1, 18_000));
    Simulator sim = new Simulator(config(2, 0), always());

    PolicyResult a = sim.staticPeak(jobs);
    assertThat(sim.peakDemand(jobs)).isEqualTo(1);
    assertThat(a.gpuHours()).isCloseTo(3.0, within(1e-9)); // one GPU from 0 to 3 h
    assertThat(a.cost()).isCloseTo(3.0 * OD, within(1e-9));

    PolicyResult b = sim.fifoDynamic(jobs);
    assertThat(b.gpuHours()).isCloseTo(2.0 + 2 * 600 / 3600.0, within(1e-9)); // work + two idle timeouts
    assertThat(b.cost()).isCloseTo((2.0 + 1.0 / 3) * OD, within(1e-9));

    PolicyResult c = sim.costAware(jobs);
    // the optimum: nothing but the work itself, all of it on spot
    assertThat(c.spotGpuHours()).isCloseTo(2.0, within(1e-9));
    assertThat(c.onDemandGpuHours()).isZero();
    assertThat(c.cost()).isCloseTo(2.0 * SPOT, within(1e-9));
    for (PolicyResult r : List.of(a, b, c)) {
      assertThat(r.completions()).containsEntry(0, 3600.0).containsEntry(1, 10_800.0);
      assertThat(r.deadlineMisses()).isZero();
      assertThat(r.meanJctSeconds()).isCloseTo(3600, within(1e-9));
    }
  }

  @Test
  void deadlineThatCannotAbsorbAPreemptionStaysOnDemand() {
    // slack 1000 s < 1.5 × (20 min lost + 0 s restart)
    List<SimJob> jobs = List.of(new SimJob(0, "tight", 0, 3600, 2, 4600));
    PolicyResult c = new Simulator(config(2, 0), always()).costAware(jobs);
    assertThat(c.spotStarts()).isZero();
    assertThat(c.onDemandGpuHours()).isCloseTo(2.0, within(1e-9));
    assertThat(c.cost()).isCloseTo(2.0 * OD, within(1e-9));
    assertThat(c.deadlineMisses()).isZero();
  }

  @Test
  void preemptionLosesTheWorkSinceTheCheckpointAndWaitsForCapacity() {
    // capacity in 10-minute ticks, gone from 30 to 40 min (then back, a 2-hour cycle)
    SpotTrace zone = new SpotTrace("z", 600, new int[] {1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1});
    assertThat(zone.meanSecondsBetweenPreemptions()).isCloseTo(11 * 600, within(1e-9));
    List<SimJob> jobs = List.of(new SimJob(0, "ckpt", 0, 3600, 1, 10_800));
    PolicyResult c = new Simulator(config(1, 0), SpotMarket.aligned(List.of(zone))).costAware(jobs);
    // 0–30 min on spot (checkpoint at 20), preempted at 30: 10 min lost; waits to 40 min; 40 min of work left
    assertThat(c.preemptions()).isEqualTo(1);
    assertThat(c.lostGpuHours()).isCloseTo(600 / 3600.0, within(1e-9));
    assertThat(c.completions()).containsEntry(0, 4800.0);
    assertThat(c.spotGpuHours()).isCloseTo(4200 / 3600.0, within(1e-9));
    assertThat(c.cost()).isCloseTo(4200 / 3600.0 * SPOT, within(1e-9));
    assertThat(c.busyGpuHours()).isCloseTo((3600 + 600) / 3600.0, within(1e-9));
  }

  @Test
  void urgentArrivalEvictsASpotJobWithSlackInsteadOfMissingItsDeadline() {
    // A: 2 GPUs for 4 h, deadline at 12 h, on spot and filling the 2-GPU cluster. B arrives at 10 min needing 1 GPU
    // for 1 h with 15 min to spare (< 1.5 × 20 min: urgent). Waiting for A, as EDF without the safety net did, B
    // would finish at 5 h, 3.6 h late; instead A is evicted (its slack absorbs 10 min of lost work many times over).
    List<SimJob> jobs = List.of(new SimJob(0, "A", 0, 14_400, 2, 43_200), new SimJob(1, "B", 600, 3600, 1, 5100));
    PolicyResult c = new Simulator(config(2, 0), always()).costAware(jobs);
    assertThat(c.evictions()).isEqualTo(1);
    assertThat(c.preemptions()).isZero();
    assertThat(c.missed()).isEmpty();
    // B: 10 min to 70 min on demand; A: 10 min on spot, lost, then (not urgent, B holds a GPU) restarts at 70 min
    assertThat(c.completions()).containsEntry(1, 4200.0).containsEntry(0, 4200.0 + 14_400);
    assertThat(c.lostGpuHours()).isCloseTo(2 * 600 / 3600.0, within(1e-9));
    assertThat(c.onDemandGpuHours()).isCloseTo(1.0, within(1e-9));
    assertThat(c.spotGpuHours()).isCloseTo(2 * (600 + 14_400) / 3600.0, within(1e-9));
    assertThat(c.cost()).isCloseTo(1.0 * OD + 2 * (600 + 14_400) / 3600.0 * SPOT, within(1e-9));
    assertThat(c.busyGpuHours()).isCloseTo(2 * 4 + 1 + 2 * 600 / 3600.0, within(1e-9));
  }

  @Test
  void noEvictionOfAJobWhoseSlackWouldNotAbsorbIt() {
    // as above, but A's deadline is 50 min after its own duration: losing 10 min of work and waiting an hour for B
    // would make A late, so A keeps its GPUs and B (late either way) waits
    List<SimJob> jobs = List.of(new SimJob(0, "A", 0, 14_400, 2, 17_400), new SimJob(1, "B", 600, 3600, 1, 5100));
    PolicyResult c = new Simulator(config(2, 0), always()).costAware(jobs);
    assertThat(c.evictions()).isZero();
    assertThat(c.completions()).containsEntry(0, 14_400.0).containsEntry(1, 14_400.0 + 3600);
    assertThat(c.missed()).containsExactly(1);
  }

  @Test
  void aJobPastSavingGoesLastInsteadOfMakingAnotherLate() {
    // one GPU; L cannot meet its deadline whatever happens (30 min for 1 h of work), N can (1 h 40 min for 1 h).
    // Plain EDF would run L first (earlier deadline) and make N late too; L goes last instead.
    List<SimJob> jobs = List.of(new SimJob(0, "L", 0, 3600, 1, 1800), new SimJob(1, "N", 0, 3600, 1, 6000));
    PolicyResult c = new Simulator(config(1, 0), always()).costAware(jobs);
    assertThat(c.completions()).containsEntry(1, 3600.0).containsEntry(0, 7200.0);
    assertThat(c.missed()).containsExactly(0);
    assertThat(c.spotGpuHours()).isCloseTo(1.0, within(1e-9)); // N: 40 min of slack absorbs a preemption
    assertThat(c.onDemandGpuHours()).isCloseTo(1.0, within(1e-9));
  }

  @Test
  void fifoWaitsForTheClusterAndReusesIdleExecutors() {
    // cluster of 1 GPU: the second job queues behind the first and reuses its executor without a start-up
    List<SimJob> jobs = List.of(new SimJob(0, "a", 0, 1830, 1, 3600), new SimJob(1, "b", 60, 1800, 1, 3660));
    PolicyResult b = new Simulator(config(1, 120), always()).fifoDynamic(jobs);
    assertThat(b.completions()).containsEntry(0, 1950.0); // 2 min start-up, 30.5 min work
    // job b starts at the first tick after 1950 s (1980 s) on the idle executor: no start-up
    assertThat(b.completions()).containsEntry(1, 1980.0 + 1800);
    assertThat(b.missed()).containsExactly(1);
    // billed: 1950 + 30 idle + 1800 + 600 idle timeout
    assertThat(b.onDemandGpuHours()).isCloseTo((1950 + 30 + 1800 + 600) / 3600.0, within(1e-9));
  }

  @Test
  void replayIsDeterministicForASeedAndItsAccountingAddsUp() throws Exception {
    List<PolicyResult> r = deterministicAndAccounted(64);
    assertThat(r.get(2).missesBeyond(r.get(0))).isZero();
  }

  @Test
  void contendedReplayIsDeterministicAndItsAccountingAddsUpWithEvictions() throws Exception {
    // 32 GPUs for the trace's first 120 jobs: overloaded ((a) misses half of them), and (c) evicts
    List<PolicyResult> r = deterministicAndAccounted(32);
    assertThat(r.get(2).evictions()).isPositive();
    assertThat(r.get(2).preemptions()).isPositive();
  }

  private static List<PolicyResult> deterministicAndAccounted(int clusterGpus) throws Exception {
    List<SimJob> jobs = philly(120);
    List<SpotTrace> zones = zones();
    SimConfig cfg = new SimConfig(clusterGpus, 60, 2.48, 0.992, 120, 60, 1800, 1.5);
    List<PolicyResult> first = new Simulator(cfg, SpotMarket.seeded(zones, 7)).all(jobs);
    List<PolicyResult> again = new Simulator(cfg, SpotMarket.seeded(zones, 7)).all(jobs);
    assertThat(again).isEqualTo(first);
    assertThat(SpotMarket.seeded(zones, 7).offset(0)).isNotEqualTo(SpotMarket.seeded(zones, 8).offset(0));

    double work = jobs.stream().mapToDouble(SimJob::gpuSeconds).sum() / 3600;
    for (PolicyResult r : first) {
      assertThat(r.completions()).hasSize(jobs.size());
      assertThat(r.cost()).as(r.policy())
          .isCloseTo(r.onDemandGpuHours() * cfg.onDemandGpuHour() + r.spotGpuHours() * cfg.spotGpuHour(),
              within(1e-6 * r.cost()));
      // every GPU-hour of work was done once, plus what preemptions threw away; nobody paid for less
      assertThat(r.busyGpuHours()).as(r.policy()).isCloseTo(work + r.lostGpuHours(), within(1e-6 * work));
      assertThat(r.gpuHours()).as(r.policy()).isGreaterThanOrEqualTo(r.busyGpuHours() - 1e-9);
    }
    PolicyResult a = first.get(0);
    double first0 = jobs.stream().mapToDouble(SimJob::arrival).min().orElseThrow();
    double last = a.completions().values().stream().mapToDouble(Double::doubleValue).max().orElseThrow();
    int peak = new Simulator(cfg, SpotMarket.seeded(zones, 7)).peakDemand(jobs);
    assertThat(a.gpuHours()).isCloseTo(peak * (last - first0) / 3600, within(1e-6));
    return first;
  }

  @Test
  void refusesAJobLargerThanTheCluster() {
    Simulator sim = new Simulator(config(2, 0), always());
    assertThatThrownBy(() -> sim.costAware(List.of(new SimJob(3, "big", 0, 60, 4, 60))))
        .isInstanceOf(dev.stagecraft.spi.StagecraftException.class)
        .hasMessage("Cannot replay job 3: it needs 4 GPUs and the cluster has 2 (expected a cluster at least as large "
            + "as the largest job)");
    assertThatThrownBy(() -> JobTraces.toJobs(List.of(), Map.of(), 0.5))
        .hasMessage("Invalid deadline slack: 0.5 (expected at least 1: a deadline no sooner than the job's own "
            + "duration)");
  }

  @Test
  void readsTheGavelTraceAndDerivesDurationsAndDeadlines() throws Exception {
    List<SimJob> jobs = philly(5);
    // first line: Transformer (batch size 128), 95121 steps at 8.7418 steps/s, arrival 0, 1 GPU
    assertThat(jobs.get(0).duration()).isCloseTo(95121 / 8.741806494725642, within(1e-6));
    assertThat(jobs.get(0).deadline()).isCloseTo(1.5 * jobs.get(0).duration(), within(1e-6));
    assertThat(jobs.get(0).gpus()).isEqualTo(1);
    assertThatThrownBy(() -> JobTraces.readGavel(new java.io.ByteArrayInputStream("a\tb\n".getBytes()), "bad.trace"))
        .hasMessage("Invalid job trace bad.trace line 1: 2 tab-separated fields (expected 7: type, command, steps "
            + "flag, data-dir flag, total steps, arrival seconds, scale factor)");
  }

  static List<SimJob> philly(int n) throws Exception {
    List<JobTraces.TraceJob> trace;
    try (InputStream in = JobTraces.resource("0e4a51.trace")) {
      trace = JobTraces.readGavel(in, "0e4a51.trace");
    }
    Map<String, Double> rates;
    try (InputStream in = JobTraces.resource("gavel-v100-throughputs.json")) {
      rates = JobTraces.readThroughputs(in, "gavel-v100-throughputs.json");
    }
    return JobTraces.toJobs(trace.subList(0, n), rates, 1.5);
  }

  static List<SpotTrace> zones() throws Exception {
    List<SpotTrace> out = new java.util.ArrayList<>();
    for (String z : Arrays.asList("us-east-1a", "us-west-2a")) {
      String name = "availability_1-node_aws-02-15-2023_" + z + "_v100_1.json";
      try (InputStream in = JobTraces.resource(name)) {
        out.add(SpotTrace.read(in, name));
      }
    }
    return out;
  }
}
