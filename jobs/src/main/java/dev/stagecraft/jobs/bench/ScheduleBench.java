package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.policies.sched.PolicyResult;
import dev.stagecraft.policies.sched.Replay;
import dev.stagecraft.policies.sched.SimConfig;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * {@code bench schedule}: replays a Philly-derived job trace (Gavel) on a simulated GPU cluster with spot capacity
 * from AWS availability traces, under (a) static peak provisioning, (b) FIFO with Spark-style dynamic allocation and
 * (c) Stagecraft's cost-aware policy, in one run. One line per baseline: (c) against it, with (c)'s deadline misses that
 * the baseline, and that (a), do not have. No Spark.
 */
final class ScheduleBench {
  private ScheduleBench() {}

  static void run(Optional<Path> trace, List<Path> spot, int clusterGpus, long seed, double slack,
      Consumer<ObjectNode> out) throws Exception {
    Replay.Settings d = Replay.Settings.defaults();
    Replay.Settings s = new Replay.Settings(trace, spot, clusterGpus, slack, seed, d.gpuType(), d.tickSeconds(),
        d.startupSeconds(), d.idleTimeoutSeconds(), d.checkpointSeconds(), d.safetyMargin(), d.maxJobs());
    Bench.log("schedule: replaying {} under three policies", trace.map(Path::toString).orElse(Replay.DEFAULT_TRACE));
    long t0 = System.nanoTime();
    Replay r = Replay.run(s, PriceCatalog.builtIn());
    Bench.log("schedule: {} jobs simulated in {} s", r.jobs().size(), Bench.round((System.nanoTime() - t0) / 1e9, 2));
    PolicyResult ours = r.results().get(2);
    for (PolicyResult base : r.results().subList(0, 2)) {
      ObjectNode line = Results.line("schedule");
      SimConfig c = r.config();
      ObjectNode p = line.putObject("params");
      p.put("trace", r.trace()).put("jobs", r.jobs().size()).put("cluster_gpus", c.clusterGpus())
          .put("seed", r.seed()).put("deadline_slack", r.deadlineSlack())
          .put("gpu_hour_on_demand", c.onDemandGpuHour()).put("gpu_hour_spot", c.spotGpuHour())
          .put("tick_s", c.tickSeconds()).put("startup_s", c.startupSeconds())
          .put("idle_timeout_s", c.idleTimeoutSeconds()).put("checkpoint_s", c.checkpointSeconds())
          .put("safety_margin", c.safetyMargin());
      p.putArray("spot_traces").addAll(r.spotZones().stream()
          .map(z -> Results.JSON.getNodeFactory().textNode(z)).toList());
      line.set("ours", figures(ours, "stagecraft cost-aware (EDF, spot where the deadline absorbs a preemption; "
          + "urgent jobs first, on demand, evicting jobs with slack)"));
      line.set("baseline", figures(base, base.policy().equals("static-peak")
          ? "static peak provisioning (on demand, FIFO)" : "FIFO with Spark dynamic allocation (on demand)"));
      line.put("cost_ratio", Bench.round(ours.cost() / base.cost(), 4));
      line.put("deadline_misses_beyond_baseline", ours.missesBeyond(base));
      line.put("deadline_misses_beyond_static_peak", ours.missesBeyond(r.results().get(0)));
      out.accept(line);
    }
  }

  private static ObjectNode figures(PolicyResult r, String name) {
    ObjectNode n = Results.JSON.createObjectNode();
    n.put("name", name).put("policy", r.policy())
        .put("cost", Bench.round(r.cost(), 2))
        .put("gpu_hours", Bench.round(r.gpuHours(), 1))
        .put("spot_gpu_hours", Bench.round(r.spotGpuHours(), 1))
        .put("busy_gpu_hours", Bench.round(r.busyGpuHours(), 1))
        .put("lost_gpu_hours", Bench.round(r.lostGpuHours(), 1))
        .put("mean_jct_hours", Bench.round(r.meanJctSeconds() / 3600, 2))
        .put("p99_jct_hours", Bench.round(r.p99JctSeconds() / 3600, 2))
        .put("deadline_misses", r.deadlineMisses())
        .put("preemptions", r.preemptions())
        .put("evictions", r.evictions());
    return n;
  }
}
