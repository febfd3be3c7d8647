package dev.stagecraft.jobs.policy;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.stagecraft.jobs.engine.CostFiles;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.policies.spark.SparkPolicies;
import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import dev.stagecraft.testing.StandaloneCluster;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Policies on a real standalone cluster (master + 2 workers with one fake GPU each), dynamic allocation on:
 * {@code sql} under {@code cpu-etl} runs on default-profile executors, the GPU step under {@code gpu-inference} on
 * executors of its own profile with two tasks per GPU, those are released after the idle timeout while a later CPU
 * step still runs, and the cost report adds up to the recorded lifetimes × catalog prices.
 */
class PolicyClusterIT {
  @TempDir static Path dir;
  static StandaloneCluster cluster;
  static SparkSession spark;

  /** Runs 4 tasks under the step's resource profile; records where each ran and which GPU address it got. */
  public static final class GpuProbe implements StepKind {
    @Override
    public String name() {
      return "gpuprobe";
    }

    @Override
    public List<FieldSpec> fields() {
      return List.of();
    }

    @Override
    public List<String> outputs() {
      return List.of();
    }

    @Override
    public void run(StepContext ctx) {
      JavaSparkContext jsc = JavaSparkContext.fromSparkContext(ctx.spark().sparkContext());
      JavaRDD<Integer> data = ctx.withStepResources(jsc.parallelize(List.of(1, 2, 3, 4), 4));
      org.apache.spark.api.java.function.FlatMapFunction<Iterator<Integer>, String> probe = it -> {
        TaskContext tc = TaskContext.get();
        var gpu = tc.resourcesJMap().get("gpu");
        Thread.sleep(1500); // overlap: two tasks share each GPU at the same time
        return List.of(org.apache.spark.SparkEnv.get().executorId() + "/"
            + (gpu == null ? "none" : String.join(",", gpu.addresses()))).iterator();
      };
      List<String> placements = data.mapPartitions(probe).collect();
      ctx.detail("placements", new ArrayList<>(placements));
    }
  }

  /** A CPU step that outlives the GPU executors' idle timeout. */
  public static final class Pause implements StepKind {
    @Override
    public String name() {
      return "pause";
    }

    @Override
    public List<FieldSpec> fields() {
      return List.of(FieldSpec.optional("seconds", FieldSpec.Type.INTEGER, "seconds"));
    }

    @Override
    public List<String> outputs() {
      return List.of();
    }

    @Override
    public void run(StepContext ctx) throws Exception {
      Thread.sleep(ctx.step().intValue("seconds", 1) * 1000L);
    }
  }

  @AfterAll
  static void stop() {
    if (spark != null) {
      spark.stop();
    }
    if (cluster != null) {
      cluster.close();
    }
  }

  @Test
  void cpuAndGpuStepsRunOnTheirOwnExecutorsAndTheLedgerAddsUp() throws Exception {
    Path f = dir.resolve("wf.yaml");
    Files.writeString(f, """
        name: policies-cluster
        policies:
          cpu-etl:
            executor: { cores: 1, memory: 512m, memory_overhead: 384m }
            allocation: { mode: dynamic, min: 0, max: 2, initial: 1, idle_timeout: 4s }
          gpu-inference:
            executor: { cores: 2, memory: 512m, memory_overhead: 384m, gpus: 1, gpu_type: t4 }
            task: { cpus: 1, gpus: 0.5 }
            allocation: { mode: dynamic, min: 0, max: 2, initial: 0, idle_timeout: 4s }
            market: spot
            pool: inference
        steps:
          - { id: sql, kind: sql, policy: cpu-etl, sql: "SELECT id, id * 2 AS twice FROM range(0, 1000, 1, 2)" }
          - { id: infer, kind: gpuprobe, after: [sql], policy: gpu-inference }
          - { id: report, kind: pause, after: [infer], policy: cpu-etl, seconds: 15 }
        """);
    StepKinds kinds = StepKinds.discover().with(new GpuProbe(), new Pause());
    WorkflowSpec spec = new WorkflowLoader(kinds).load(f);
    List<ResourcePolicy> used = List.of(spec.policies().get("cpu-etl"), spec.policies().get("gpu-inference"));
    Map<String, String> conf = SparkPolicies.applicationConf(used.get(0), used, Optional.empty());

    cluster = StandaloneCluster.start(dir, 2, 3, 1);
    SparkSession.Builder b = cluster.session("policy-cluster-it", 1, false);
    conf.forEach(b::config);
    spark = b.getOrCreate();

    String ws = dir.resolve("ws").toString();
    RunLedger ledger = new Engine(spark, kinds, EngineListener.NONE)
        .run(spec, Engine.Options.run("p1").withWorkspace(ws));
    assertThat(ledger.status()).as(String.valueOf(ledger.steps())).isEqualTo(RunStatus.SUCCEEDED);

    @SuppressWarnings("unchecked")
    Map<String, Object> resources = (Map<String, Object>) ledger.step("infer").details().get("resources");
    int gpuProfile = ((Number) resources.get("resource_profile")).intValue();
    assertThat(gpuProfile).isPositive();
    @SuppressWarnings("unchecked")
    List<String> placements = (List<String>) ledger.step("infer").details().get("placements");
    assertThat(placements).hasSize(4).noneMatch(p -> p.endsWith("/none"));

    CostReport report = CostFiles.read(new Workspace(ws, spark.sparkContext().hadoopConfiguration()), "p1")
        .orElseThrow();
    List<CostReport.ExecutorCost> gpuExecutors =
        report.executors().stream().filter(e -> e.profile() == gpuProfile).toList();
    List<CostReport.ExecutorCost> cpuExecutors =
        report.executors().stream().filter(e -> e.profile() == 0).toList();
    assertThat(gpuExecutors).isNotEmpty().allMatch(e -> e.gpus() == 1 && e.market().equals("spot"));
    assertThat(cpuExecutors).isNotEmpty().allMatch(e -> e.gpus() == 0 && e.market().equals("on_demand"));
    // Two tasks per GPU: a GPU executor (2 cores, 1 GPU, 0.5 GPU a task) ran two tasks at once, never more.
    assertThat(gpuExecutors.stream().mapToInt(CostReport.ExecutorCost::peakConcurrentTasks).max().orElse(0))
        .isEqualTo(2);
    assertThat(placements.stream().map(p -> p.substring(0, p.indexOf('/'))).distinct())
        .allMatch(id -> gpuExecutors.stream().anyMatch(e -> e.id().equals(id)));
    // Released after idle_timeout while 'report' (a 15 s pause) still ran: their lives end well before it does. (Not
    // before the last executor's end: the CPU executors idle through the pause and may go at the same time.)
    long reportEnd = java.time.Instant.parse(ledger.step("report").ended()).toEpochMilli();
    assertThat(gpuExecutors).allMatch(e -> e.end() < reportEnd - 3000);
    // Totals = recorded lifetimes × catalog prices, executors and driver.
    PriceCatalog prices = PriceCatalog.builtIn();
    double expected = 0;
    for (CostReport.ExecutorCost e : report.executors()) {
      double price = prices.hourly(e.cores(), e.memoryMib(), e.gpus(), Optional.ofNullable(e.gpuType()),
          ResourcePolicy.Market.valueOf(e.market().toUpperCase(java.util.Locale.ROOT)));
      assertThat(e.pricePerHour()).isCloseTo(price, within(1e-12));
      expected += price * (e.end() - e.start()) / 3_600_000.0;
    }
    // The driver (this JVM, client mode) is billed as its own item: 1 core, 1g + 384m, on demand, from the
    // application's start (this is its first run) to the run's end (after its last step's).
    assertThat(report.drivers()).singleElement().satisfies(d -> {
      assertThat(d.id()).isEqualTo("driver");
      assertThat(d.cores()).isEqualTo(1);
      assertThat(d.memoryMib()).isEqualTo(1024 + 384);
      assertThat(d.market()).isEqualTo("on_demand");
      assertThat(d.start()).isEqualTo(spark.sparkContext().startTime());
      assertThat(d.end()).isGreaterThanOrEqualTo(reportEnd);
      assertThat(d.cost()).isPositive().isCloseTo(prices.hourly(1, 1024 + 384, 0, Optional.empty(),
          ResourcePolicy.Market.ON_DEMAND) * (d.end() - d.start()) / 3_600_000.0, within(1e-12));
    });
    expected += report.drivers().get(0).cost();
    assertThat(report.total().driverCost()).isCloseTo(report.drivers().get(0).cost(), within(1e-12));
    assertThat(report.total().cost()).isCloseTo(expected, within(1e-12));
    assertThat(report.steps().get("infer").gpuUtilisation()).isNotNull().isPositive();
    assertThat(report.total().idleGpuCost()).isPositive();
  }
}
