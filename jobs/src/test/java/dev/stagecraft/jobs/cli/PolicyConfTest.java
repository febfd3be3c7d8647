package dev.stagecraft.jobs.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The application settings bin/stagecraft derives from a workflow's policies. */
class PolicyConfTest {
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
    String before = System.getProperty("spark.master");
    System.setProperty("spark.master", "spark://127.0.0.1:7077");
    try {
      Map<String, String> conf = SparkSessions.policyConf(spec);
      assertThat(conf).containsEntry("spark.dynamicAllocation.enabled", "true")
          .containsEntry("spark.dynamicAllocation.shuffleTracking.enabled", "true")
          .containsEntry("spark.executor.cores", "4").containsEntry("spark.executor.memory", "8192m")
          // No RAPIDS jar on the test classpath: the plugin is left out rather than failing the session.
          .doesNotContainKey("spark.plugins");
    } finally {
      if (before == null) {
        System.clearProperty("spark.master");
      } else {
        System.setProperty("spark.master", before);
      }
    }
  }

  @Test
  void aWorkflowWithoutPoliciesAddsNothing() {
    WorkflowSpec none = new WorkflowLoader(StepKinds.discover()).parse("wf.yaml",
        "name: p\nsteps:\n  - { id: a, kind: sql, sql: \"SELECT 1\" }\n", "file:/flows");
    assertThat(SparkSessions.policyConf(none)).isEmpty();
  }

  @Test
  void barrierStepsKeepTheApplicationStatic() {
    WorkflowSpec demo = new WorkflowLoader(StepKinds.discover()).load(
        Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/workflow.yaml"));
    String before = System.getProperty("spark.master");
    System.setProperty("spark.master", "spark://127.0.0.1:7077");
    try {
      Map<String, String> conf = SparkSessions.policyConf(demo);
      assertThat(conf).containsEntry("spark.dynamicAllocation.enabled", "false")
          .containsEntry("spark.executor.instances", "2")
          .doesNotContainKey("spark.dynamicAllocation.shuffleTracking.enabled");
    } finally {
      if (before == null) {
        System.clearProperty("spark.master");
      } else {
        System.setProperty("spark.master", before);
      }
    }
  }
}
