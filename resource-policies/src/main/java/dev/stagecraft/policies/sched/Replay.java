package dev.stagecraft.policies.sched;

import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.policies.cost.PriceCatalog;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * One replay of a job trace under the three policies, set up from the built-in traces (or files) and the price
 * catalog's GPU prices: what {@code stagecraft bench schedule} runs.
 */
public record Replay(String trace, List<SimJob> jobs, List<String> spotZones, SimConfig config, long seed,
    double deadlineSlack, List<PolicyResult> results) {

  /** The built-in Philly-derived trace. */
  public static final String DEFAULT_TRACE = "0e4a51.trace";

  /** The built-in spot availability traces (two AWS zones, one V100 each). */
  public static final List<String> DEFAULT_SPOT = List.of(
      "availability_1-node_aws-02-15-2023_us-east-1a_v100_1.json",
      "availability_1-node_aws-02-15-2023_us-west-2a_v100_1.json");

  /** What a replay can be told; defaults in {@link #defaults()}. */
  public record Settings(Optional<Path> trace, List<Path> spotTraces, int clusterGpus, double deadlineSlack,
      long seed, String gpuType, double tickSeconds, double startupSeconds, double idleTimeoutSeconds,
      double checkpointSeconds, double safetyMargin, int maxJobs) {
    public Settings {
      spotTraces = List.copyOf(spotTraces);
    }

    /**
     * A cluster as large as the trace's peak demand ({@code clusterGpus} 0: every job could start on arrival, so (a)
     * is truly sized for the peak; pass a smaller cluster to see the policies under contention); deadlines
     * at 1.5× a job's duration after its arrival; V100 prices; 1-minute ticks; 2 minutes to start executors; Spark's
     * 60 s idle timeout; a checkpoint every 30 minutes of work; safety margin 1.5.
     */
    public static Settings defaults() {
      return new Settings(Optional.empty(), List.of(), 0, 1.5, 1, "v100", 60, 120, 60, 1800, 1.5, 0);
    }
  }

  public static Replay run(Settings s, PriceCatalog prices) throws IOException {
    String traceName = s.trace().map(Path::toString).orElse(DEFAULT_TRACE);
    List<JobTraces.TraceJob> trace;
    try (InputStream in = s.trace().isPresent() ? Files.newInputStream(s.trace().get())
        : JobTraces.resource(DEFAULT_TRACE)) {
      trace = JobTraces.readGavel(in, traceName);
    }
    if (s.maxJobs() > 0 && trace.size() > s.maxJobs()) {
      trace = trace.subList(0, s.maxJobs());
    }
    Map<String, Double> rates;
    try (InputStream in = JobTraces.resource("gavel-v100-throughputs.json")) {
      rates = JobTraces.readThroughputs(in, "gavel-v100-throughputs.json");
    }
    List<SimJob> jobs = JobTraces.toJobs(trace, rates, s.deadlineSlack());
    List<SpotTrace> zones = new ArrayList<>();
    if (s.spotTraces().isEmpty()) {
      for (String name : DEFAULT_SPOT) {
        try (InputStream in = JobTraces.resource(name)) {
          zones.add(SpotTrace.read(in, name));
        }
      }
    } else {
      for (Path p : s.spotTraces()) {
        try (InputStream in = Files.newInputStream(p)) {
          zones.add(SpotTrace.read(in, p.getFileName().toString()));
        }
      }
    }
    Optional<String> gpu = Optional.of(s.gpuType());
    int cluster = s.clusterGpus() > 0 ? s.clusterGpus() : peakDemand(jobs);
    SimConfig cfg = new SimConfig(cluster, s.tickSeconds(),
        prices.hourly(0, 0, 1, gpu, Market.ON_DEMAND), prices.hourly(0, 0, 1, gpu, Market.SPOT),
        s.startupSeconds(), s.idleTimeoutSeconds(), s.checkpointSeconds(), s.safetyMargin());
    List<PolicyResult> results = new Simulator(cfg, SpotMarket.seeded(zones, s.seed())).all(jobs);
    return new Replay(traceName, jobs, zones.stream().map(SpotTrace::name).toList(), cfg, s.seed(),
        s.deadlineSlack(), results);
  }

  /** Most GPUs in use at once if every job ran from its arrival (no cluster limit). */
  static int peakDemand(List<SimJob> jobs) {
    int most = jobs.stream().mapToInt(SimJob::gpus).sum();
    return new Simulator(new SimConfig(Math.max(1, most), 60, 1, 1, 0, 0, 60, 1), SpotMarket.aligned(List.of()))
        .peakDemand(jobs);
  }
}
