package dev.stagecraft.policies.spark;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.policies.Policies;
import dev.stagecraft.policies.ResourcePolicy;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.resource.ResourceProfile;
import org.apache.spark.resource.TaskResourceProfile;
import org.junit.jupiter.api.Test;

class SparkPoliciesTest {
  private static final ResourcePolicy ETL = Policies.BUILT_IN.get("cpu-etl");
  private static final ResourcePolicy INFER = Policies.BUILT_IN.get("gpu-inference");
  private static final ResourcePolicy TRAIN = Policies.BUILT_IN.get("gpu-training");

  @Test
  void baseIsTheFirstCpuPolicy() {
    assertThat(SparkPolicies.basePolicy(List.of(INFER, ETL))).contains(ETL);
    assertThat(SparkPolicies.basePolicy(List.of(INFER, TRAIN))).contains(INFER);
    assertThat(SparkPolicies.basePolicy(List.of())).isEmpty();
  }

  @Test
  void dynamicApplicationConf() {
    Map<String, String> conf = SparkPolicies.applicationConf(ETL, List.of(ETL, INFER), Optional.of("/gpus.sh"));
    assertThat(conf).containsEntry("spark.dynamicAllocation.enabled", "true")
        .containsEntry("spark.dynamicAllocation.shuffleTracking.enabled", "true")
        .containsEntry("spark.dynamicAllocation.minExecutors", "0")
        .containsEntry("spark.dynamicAllocation.initialExecutors", "1")
        .containsEntry("spark.dynamicAllocation.maxExecutors", "4")
        .containsEntry("spark.dynamicAllocation.executorIdleTimeout", "30000ms")
        .containsEntry("spark.executor.cores", "4")
        .containsEntry("spark.executor.memory", "8192m")
        .containsEntry("spark.executor.memoryOverhead", "1024m")
        .containsEntry("spark.task.cpus", "1")
        .containsEntry("spark.scheduler.mode", "FAIR")
        .containsEntry("spark.plugins", "com.nvidia.spark.SQLPlugin")
        .containsEntry("spark.rapids.sql.enabled", "false")
        .containsEntry("spark.rapids.sql.concurrentGpuTasks", "2")
        .doesNotContainKey("spark.executor.instances")
        .doesNotContainKey("spark.executor.resource.gpu.amount"); // CPU default profile: GPUs come with the profile
  }

  @Test
  void staticGpuApplicationConf() {
    Map<String, String> conf = SparkPolicies.applicationConf(TRAIN, List.of(TRAIN), Optional.of("/gpus.sh"));
    assertThat(conf).containsEntry("spark.dynamicAllocation.enabled", "false")
        .containsEntry("spark.executor.instances", "2")
        .containsEntry("spark.executor.resource.gpu.amount", "1")
        .containsEntry("spark.task.resource.gpu.amount", "1")
        .containsEntry("spark.executor.resource.gpu.discoveryScript", "/gpus.sh")
        .doesNotContainKey("spark.plugins");
  }

  @Test
  void executorProfileUnderDynamicAllocation() {
    Map<String, String> conf = SparkPolicies.applicationConf(ETL, List.of(ETL, INFER), Optional.empty());
    assertThat(SparkPolicies.profileKind(ETL, conf)).isEqualTo(SparkPolicies.ProfileKind.DEFAULT);
    assertThat(SparkPolicies.profileKind(INFER, conf)).isEqualTo(SparkPolicies.ProfileKind.EXECUTOR);
    ResourceProfile rp = SparkPolicies.profile(INFER, SparkPolicies.ProfileKind.EXECUTOR, Optional.of("/gpus.sh"));
    assertThat(rp).isNotInstanceOf(TaskResourceProfile.class);
    assertThat(rp.executorResourcesJMap().get("cores").amount()).isEqualTo(4);
    assertThat(rp.executorResourcesJMap().get("memory").amount()).isEqualTo(16384);
    assertThat(rp.executorResourcesJMap().get("memoryOverhead").amount()).isEqualTo(2048);
    assertThat(rp.executorResourcesJMap().get("gpu").amount()).isEqualTo(1);
    assertThat(rp.executorResourcesJMap().get("gpu").discoveryScript()).isEqualTo("/gpus.sh");
    assertThat(rp.taskResourcesJMap().get("gpu").amount()).isEqualTo(0.25);
    assertThat(rp.taskResourcesJMap().get("cpus").amount()).isEqualTo(1.0);
  }

  @Test
  void taskProfileUnderStaticAllocation() {
    Map<String, String> conf = SparkPolicies.applicationConf(TRAIN, List.of(TRAIN), Optional.empty());
    ResourcePolicy half = new ResourcePolicy("half", TRAIN.executor(), new ResourcePolicy.Task(1, 0.5),
        TRAIN.allocation(), TRAIN.market(), "half", 1, TRAIN.rapids(), TRAIN.collectives());
    assertThat(SparkPolicies.profileKind(TRAIN, conf)).isEqualTo(SparkPolicies.ProfileKind.DEFAULT);
    assertThat(SparkPolicies.profileKind(half, conf)).isEqualTo(SparkPolicies.ProfileKind.TASK);
    ResourceProfile rp = SparkPolicies.profile(half, SparkPolicies.ProfileKind.TASK, Optional.empty());
    assertThat(rp).isInstanceOf(TaskResourceProfile.class);
    assertThat(rp.executorResourcesJMap()).isEmpty();
    assertThat(rp.taskResourcesJMap().get("gpu").amount()).isEqualTo(0.5);
  }

  @Test
  void fairPoolsWeighedByPriority() {
    String xml = SparkPolicies.fairSchedulerXml(List.of(ETL, INFER));
    assertThat(xml).contains("<pool name=\"etl\">").contains("<pool name=\"inference\">")
        .contains("<weight>2</weight>").contains("<weight>1</weight>");
  }

  @Test
  void localModeIgnoresExecutorsAllocationMarketAndRapids() {
    assertThat(SparkPolicies.ignoredInLocalMode(INFER)).containsExactly(
        "executor (cores 4, memory 16384m, gpus 1)", "task (cpus 1, gpus 0.25)", "allocation dynamic", "market spot",
        "rapids");
  }
}
