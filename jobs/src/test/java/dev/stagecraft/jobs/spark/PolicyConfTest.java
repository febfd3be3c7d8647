package dev.stagecraft.jobs.spark;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.Placement;
import dev.stagecraft.jobs.engine.SparkSubmitLauncher;
import dev.stagecraft.jobs.engine.StepLauncher;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.conf.Configuration;
import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The application settings bin/stagecraft derives from a workflow's policies. */
class PolicyConfTest {
  @TempDir Path dir;

  private final WorkflowSpec spec = new WorkflowLoader(StepKinds.discover()).parse("wf.yaml", """
      name: p
      steps:
        - { id: a, kind: sql, sql: "SELECT 1", policy: cpu-etl }
        - { id: b, kind: sql, sql: "SELECT 2", policy: gpu-inference }
      """, "file:/flows");

  @Test
  void localModeGetsOnlyTheWeightedPools() throws Exception {
    Map<String, String> conf = SparkSessions.policyConf(spec);
    assertThat(conf).containsOnlyKeys("spark.scheduler.allocation.file");
    String xml = Files.readString(Path.of(conf.get("spark.scheduler.allocation.file")));
    assertThat(xml).contains("<pool name=\"etl\">").contains("<pool name=\"inference\">").contains("<weight>2</weight>");
  }

  @Test
  void aClusterGetsDynamicAllocationAndTheCpuPolicyAsDefaultExecutors() {
    onMaster("spark://127.0.0.1:7077", () -> {
      Map<String, String> conf = SparkSessions.policyConf(spec);
      assertThat(conf).containsEntry("spark.dynamicAllocation.enabled", "true")
          .containsEntry("spark.dynamicAllocation.shuffleTracking.enabled", "true")
          .containsEntry("spark.executor.cores", "4").containsEntry("spark.executor.memory", "8192m")
          // No RAPIDS jar on the test classpath: the plugin is left out rather than failing the session.
          .doesNotContainKey("spark.plugins");
    });
  }

  @Test
  void aWorkflowWithoutPoliciesAddsNothing() {
    WorkflowSpec none = new WorkflowLoader(StepKinds.discover()).parse("wf.yaml",
        "name: p\nsteps:\n  - { id: a, kind: sql, sql: \"SELECT 1\" }\n", "file:/flows");
    assertThat(SparkSessions.policyConf(none)).isEmpty();
    assertThat(Placement.of(none, "spark://h:7077", st -> true).ownApplication())
        .isEmpty();
  }

  @Test
  void onAClusterTheDemosTrainingRunsAsItsOwnApplicationAndTheRestAllocatesDynamically() {
    WorkflowSpec demo = demo();
    onMaster("spark://127.0.0.1:7077", () -> {
      assertThat(SparkSessions.placement(demo, StepKinds.discover()).ownApplication()).containsExactly("fit");
      Map<String, String> conf = SparkSessions.policyConf(demo);
      // Sized by cpu-etl (the first CPU policy) and gpu-inference only: gpu-training's static executors are the
      // launched application's.
      assertThat(conf).containsEntry("spark.dynamicAllocation.enabled", "true")
          .containsEntry("spark.dynamicAllocation.maxExecutors", "4")
          .containsEntry("spark.executor.cores", "4")
          .doesNotContainKey("spark.executor.instances");
    });
  }

  @Test
  void aLaunchedStepGetsItsPolicysStaticExecutorsAndInheritsTheRestButNotTheSizingOrIdentity() throws Exception {
    WorkflowSpec demo = demo();
    SparkConf parent = new SparkConf(false)
        .set("spark.master", "spark://h:7077").set("spark.app.id", "app-1").set("spark.driver.port", "40000")
        .set("spark.driver.host", "10.0.0.5").set("spark.dynamicAllocation.enabled", "true")
        .set("spark.executor.cores", "4").set("spark.executor.memory", "8192m")
        .set("spark.hadoop.fs.s3a.endpoint", "http://s3:9000").set("spark.executor.extraJavaOptions", "-Dx=1");
    SparkSubmitLauncher launcher = new SparkSubmitLauncher(parent, Optional.empty(), Optional.empty());
    var ws = new Workspace(dir.toUri().toString(), new Configuration());
    var request = new StepLauncher.Request(demo, demo.step("fit"), demo.policyOf(demo.step("fit")), "r1", ws,
        "token", new org.apache.hadoop.fs.Path(dir.toUri().toString(), "u.json"),
        new org.apache.hadoop.fs.Path(dir.toUri().toString(), "out.log"),
        new org.apache.hadoop.fs.Path(dir.toUri().toString(), "prepared.json"));

    Map<String, String> conf = launcher.conf(request);

    assertThat(conf).containsEntry("spark.dynamicAllocation.enabled", "false")
        .containsEntry("spark.executor.instances", "2").containsEntry("spark.executor.memory", "16384m")
        .containsEntry("spark.executor.resource.gpu.amount", "1").containsEntry("spark.task.resource.gpu.amount", "1")
        .containsEntry("spark.hadoop.fs.s3a.endpoint", "http://s3:9000")
        .containsEntry("spark.executor.extraJavaOptions", "-Dx=1").containsEntry("spark.driver.host", "10.0.0.5")
        .containsEntry("spark.app.name", "stagecraft a9a r1 fit")
        .containsEntry(Settings.EXECUTOR_MARKET_CONF, "ON_DEMAND")
        .doesNotContainKeys("spark.app.id", "spark.driver.port", "spark.master");
    // Without a Spark distribution the launch fails with what to set, before anything starts.
    assertThatThrownBy(() -> launcher.launch(request, line -> { }))
        .hasMessage("Cannot launch step 'fit' as its own Spark application: no Spark distribution (set SPARK_HOME "
            + "to one; its bin/spark-submit launches it)");
  }

  static WorkflowSpec demo() {
    return new WorkflowLoader(StepKinds.discover()).load(
        Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/workflow.yaml"));
  }

  /** Runs {@code body} with {@code spark.master} set as spark-submit would set it, then restores it. */
  static void onMaster(String master, Runnable body) {
    String before = System.getProperty("spark.master");
    System.setProperty("spark.master", master);
    try {
      body.run();
    } finally {
      if (before == null) {
        System.clearProperty("spark.master");
      } else {
        System.setProperty("spark.master", before);
      }
    }
  }
}
