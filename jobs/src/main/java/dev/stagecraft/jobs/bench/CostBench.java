package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.ledger.Json;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.policies.sizing.Deadline;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import org.apache.hadoop.conf.Configuration;

/**
 * What the resource policies save: the demo workflow, spark-submitted to the same standalone cluster (master and two
 * workers with one fake GPU each, started here from a Spark distribution), (a) as one static application sized for its
 * largest step — two GPU executors for the whole run — once on on-demand and once on spot executors (spot is a policy
 * setting anyone can turn on, so the static application gets it too), and (b) under Stagecraft's policies: CPU steps on
 * dynamically allocated CPU executors, training as its own static application, scoring on dynamically allocated spot
 * GPU executors released when idle. Each run's cost comes from its own cost report (the ledger's executor lifetimes ×
 * the built-in price catalog, plus every application's driver for its life, on demand). The policies keep the demo's
 * shape, scaled to fit this machine: the same executor shapes in every run, so the ratios compare allocation, not
 * sizes.
 *
 * <p>Ours run with {@code sizing: auto} and a deadline, in a workspace of their own: the first run has no history and
 * runs the policies as written (line {@code cost} against (a) on demand, line {@code cost-spot} against (a) on spot); a
 * second run is right-sized from the first (line {@code cost-sizing}: second ÷ first, with each step's decision).
 */
final class CostBench {
  static final ObjectMapper JSON = new ObjectMapper();

  /** The demo's policies, executors scaled to the benchmark cluster (4 cores, 4 GB, 1 GPU per worker). */
  static final String POLICIES = """
      policies:
        cpu-etl:
          executor: { cores: 2, memory: 1g, memory_overhead: 384m }
          allocation: { mode: dynamic, min: 0, max: 2, initial: 1, idle_timeout: 15s }
          pool: etl
        gpu-training:
          executor: { cores: 1, memory: 1g, memory_overhead: 384m, gpus: 1, gpu_type: l4 }
          task: { cpus: 1, gpus: 1 }
          allocation: { mode: static, executors: 2 }
          pool: training
          priority: 2
        gpu-inference:
          executor: { cores: 2, memory: 1g, memory_overhead: 384m, gpus: 1, gpu_type: l4 }
          task: { cpus: 1, gpus: 0.5 }
          allocation: { mode: dynamic, min: 0, max: 2, initial: 0, idle_timeout: 15s }
          market: spot
          pool: inference
          priority: 2
        static-peak:
          executor: { cores: 2, memory: 1g, memory_overhead: 384m, gpus: 1, gpu_type: l4 }
          task: { cpus: 1, gpus: 0.5 }
          allocation: { mode: static, executors: 2 }
        static-peak-spot:
          executor: { cores: 2, memory: 1g, memory_overhead: 384m, gpus: 1, gpu_type: l4 }
          task: { cpus: 1, gpus: 0.5 }
          allocation: { mode: static, executors: 2 }
          market: spot
      """;

  /** The cluster every run goes to, as the lines describe it. */
  private static final String CLUSTER = "standalone, 2 workers × (4 cores, 4 GB, 1 fake GPU)";

  private CostBench() {}

  /** The deadline of the sized runs: the demo takes 1–3 minutes here. */
  static final String DEADLINE = "15m";

  static void run(Consumer<ObjectNode> out) throws Exception {
    Path home = Path.of(System.getProperty(Settings.HOME_PROPERTY, Settings.HOME_DEFAULT));
    Path demo = home.resolve("jobs/examples/a9a/workflow.yaml");
    Submitted submit = Submitted.find("cost");
    String sparkHome = submit.sparkHome();
    Path dir = Bench.scratch("stagecraft-bench-cost");
    String yaml = Files.readString(demo);
    // The same steps, data and models; only the policies differ. Ours right-size from history (sizing: auto): the
    // first run has none and runs the policies as written, the second is sized from the first.
    String ours = yaml.replaceFirst("(?m)^steps:", POLICIES.replace("$", "\\$") + "deadline: " + DEADLINE
        + "\nsizing: auto\nsteps:");
    Files.writeString(dir.resolve("ours.yaml"), ours);
    Files.writeString(dir.resolve("static.yaml"), staticWorkflow(yaml, "static-peak"));
    Files.writeString(dir.resolve("static-spot.yaml"), staticWorkflow(yaml, "static-peak-spot"));
    Path data = demo.getParent().resolve("data");

    Bench.log("cost: starting a standalone cluster (master + 2 workers, 4 cores, 4 GB and 1 fake GPU each) from {}",
        sparkHome);
    try (DistributionCluster cluster = DistributionCluster.start(Path.of(sparkHome), dir, 2, 4, "4g", 1)) {
      // Separate workspaces: the static runs are no history for ours.
      Run peakRun = submit(cluster, submit, dir, data, "static.yaml", "static", "ws-static",
          "one static application sized for its largest step, on demand");
      Run peakSpot = submit(cluster, submit, dir, data, "static-spot.yaml", "static-spot", "ws-static-spot",
          "the same static application, its executors on spot");
      Run first = submit(cluster, submit, dir, data, "ours.yaml", "ours", "ws-ours",
          "Stagecraft's policies; no history yet, so as written");
      Run second = submit(cluster, submit, dir, data, "ours.yaml", "ours-sized", "ws-ours",
          "Stagecraft's policies right-sized from the first run");

      out.accept(againstStatic("cost", first, peakRun, "on_demand"));
      out.accept(againstStatic("cost-spot", first, peakSpot, "spot"));

      ObjectNode sized = Results.line("cost-sizing");
      sized.putObject("params").put("workflow", "a9a demo (7 steps), sizing: auto, deadline " + DEADLINE)
          .put("cluster", CLUSTER);
      sized.set("ours", side("second run, right-sized from the first", second).set("decisions",
          decisions(second.ledger)));
      sized.set("baseline", side("first run (no history: the policies as written)", first));
      sized.put("cost_ratio", Bench.round(second.total() / first.total(), 3));
      sized.put("same_outputs", sameOutputs(first.ledger, second.ledger));
      sized.put("within_deadline", second.seconds
          <= Deadline.parse(DEADLINE).orElseThrow().secondsFrom(java.time.Instant.now()));
      out.accept(sized);
    }
  }

  /** The demo with every step under {@code policy}: one static application sized for its largest step. */
  private static String staticWorkflow(String yaml, String policy) {
    return yaml.replaceFirst("(?m)^steps:", POLICIES.replace("$", "\\$") + "steps:")
        .replaceAll("(?m)^(\\s+policy:) \\S+", "$1 " + policy);
  }

  /** Ours (the first run) against the static application whose executors are on {@code market}. */
  private static ObjectNode againstStatic(String bench, Run ours, Run peak, String market) {
    ObjectNode line = Results.line(bench);
    line.putObject("params").put("workflow", "a9a demo (7 steps)").put("cluster", CLUSTER)
        .put("prices", peak.cost.path("price_catalog").asText()).put("baseline_market", market);
    line.set("ours", side("Stagecraft's policies", ours));
    line.set("baseline", side("one static application sized for the largest step, executors "
        + (market.equals("spot") ? "on spot" : "on demand"), peak));
    line.put("cost_ratio", Bench.round(ours.total() / peak.total(), 3));
    line.put("same_outputs", sameOutputs(peak.ledger, ours.ledger));
    return line;
  }

  /** One spark-submitted run of the demo: its cost report, ledger and wall time. */
  private record Run(JsonNode cost, JsonNode ledger, double seconds) {
    double total() {
      return cost.path("total").path("cost").asDouble();
    }
  }

  private static Run submit(DistributionCluster cluster, Submitted submit, Path dir, Path data, String workflow,
      String runId, String workspace, String what) throws Exception {
    Bench.log("cost: spark-submit {} as run {} ({})", workflow, runId, what);
    double seconds = submit.run(cluster.masterUrl(), List.of("--conf", "spark.sql.shuffle.partitions=4",
        "--conf", "spark.scheduler.barrier.maxConcurrentTasksCheck.interval=1s",
        "--conf", "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures=60"),
        List.of("run", dir.resolve(workflow).toString(), "--run-id", runId,
            "--workspace", dir.resolve(workspace).toUri().toString(),
            "--set", "train_path=" + data.resolve("a9a.libsvm"), "--set", "test_path=" + data.resolve("a9a.t.libsvm")),
        dir.resolve(runId + ".log")).seconds();
    Path runDir = dir.resolve(workspace + "/runs/" + runId);
    RunLedger ledger = new LedgerStore(new Workspace(dir.resolve(workspace).toString(), new Configuration()))
        .read(runId).orElseThrow(() -> new IllegalStateException("bench cost: run " + runId + " left no ledger"));
    Run run = new Run(JSON.readTree(runDir.resolve("cost.json").toFile()), Json.MAPPER.valueToTree(ledger), seconds);
    Bench.log("cost: {} finished in {} s, cost {}", runId, Bench.round(seconds, 1), run.total());
    return run;
  }

  /** Each step's right-sizing decision in a sized run: executors, task GPUs, market. */
  private static ObjectNode decisions(JsonNode ledger) {
    ObjectNode d = JSON.createObjectNode();
    for (var it = ledger.path("steps").fields(); it.hasNext(); ) {
      var e = it.next();
      JsonNode s = e.getValue().path("details").path("sizing");
      if (!s.isMissingNode()) {
        d.putObject(e.getKey()).put("executors", s.path("executors").asDouble())
            .put("task_gpus", s.path("task_gpus").asDouble()).put("market", s.path("market").asText())
            .put("mode", s.path("mode").asText());
      }
    }
    return d;
  }

  private static ObjectNode side(String name, Run run) {
    JsonNode cost = run.cost;
    JsonNode ledger = run.ledger;
    double seconds = run.seconds;
    ObjectNode n = JSON.createObjectNode().put("name", name);
    JsonNode total = cost.path("total");
    n.put("cost", Bench.round(total.path("cost").asDouble(), 6))
        .put("driver_cost", Bench.round(total.path("driver_cost").asDouble(), 6))
        .put("drivers", cost.path("drivers").size())
        .put("idle_gpu_cost", Bench.round(total.path("idle_gpu_cost").asDouble(), 6))
        .put("gpu_seconds", Bench.round(total.path("gpu_seconds").asDouble(), 1))
        .put("executors", cost.path("executors").size())
        .put("seconds", Bench.round(seconds, 1))
        .put("validation_accuracy", Bench.round(
            ledger.path("steps").path("fit").path("metrics").path("validation_accuracy").asDouble(), 4))
        .put("scored_rows", ledger.path("steps").path("score").path("metrics").path("scored_rows").asLong());
    return n;
  }

  /** Both runs succeeded with the same rows in every table output and the same scored rows. */
  private static boolean sameOutputs(JsonNode a, JsonNode b) {
    for (var it = a.path("steps").fields(); it.hasNext(); ) {
      var e = it.next();
      JsonNode other = b.path("steps").path(e.getKey());
      if (!e.getValue().path("status").asText().equals("SUCCEEDED")
          || !other.path("status").asText().equals("SUCCEEDED")) {
        return false;
      }
      for (var o = e.getValue().path("outputs").fields(); o.hasNext(); ) {
        var out = o.next();
        if (!out.getValue().path("rows").equals(other.path("outputs").path(out.getKey()).path("rows"))) {
          return false;
        }
      }
    }
    return true;
  }
}
