package dev.stagecraft.policies;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PoliciesTest {
  private static Policies.Parsed parse(String name, Map<String, Object> policy) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put(name, policy);
    return Policies.parse("wf.yaml", m);
  }

  @Test
  void builtInsAreThereAndValid() {
    assertThat(Policies.BUILT_IN).containsOnlyKeys("local", "cpu-etl", "gpu-training", "gpu-inference");
    ResourcePolicy inf = Policies.BUILT_IN.get("gpu-inference");
    assertThat(inf.allocation().dynamic()).isTrue();
    assertThat(inf.task().gpus()).isEqualTo(0.25);
    assertThat(Policies.BUILT_IN.get("gpu-training").allocation().dynamic()).isFalse();
  }

  @Test
  void readsEveryField() {
    Policies.Parsed p = parse("scoring", Map.of(
        "executor", Map.of("cores", 8, "memory", "16g", "memory_overhead", "2g", "gpus", 2, "gpu_type", "a100"),
        "task", Map.of("cpus", 2, "gpus", 0.5),
        "allocation", Map.of("mode", "dynamic", "min", 1, "max", 6, "initial", 2, "idle_timeout", "45s"),
        "market", "spot", "pool", "score", "priority", 3,
        "rapids", Map.of("enabled", true, "concurrent_gpu_tasks", 2)));
    assertThat(p.problems()).isEmpty();
    ResourcePolicy s = p.policies().get("scoring");
    assertThat(s.executor()).isEqualTo(new ResourcePolicy.Executor(8, 16384, 2048, 2, java.util.Optional.of("a100")));
    assertThat(s.task()).isEqualTo(new ResourcePolicy.Task(2, 0.5));
    assertThat(s.allocation()).isEqualTo(new ResourcePolicy.Allocation(ResourcePolicy.Allocation.Mode.DYNAMIC, 0, 1,
        6, 2, Duration.ofSeconds(45)));
    assertThat(s.market()).isEqualTo(ResourcePolicy.Market.SPOT);
    assertThat(s.pool()).isEqualTo("score");
    assertThat(s.priority()).isEqualTo(3);
    assertThat(s.rapids()).isEqualTo(new ResourcePolicy.Rapids(true, 2));
    assertThat(p.policies()).containsKeys("local", "cpu-etl"); // built-ins stay
  }

  @Test
  void defaultsForAnEmptyPolicy() {
    ResourcePolicy p = parse("tiny", Map.of()).policies().get("tiny");
    assertThat(p.executor().cores()).isEqualTo(1);
    assertThat(p.executor().memoryOverheadMib()).isEqualTo(384);
    assertThat(p.allocation().mode()).isEqualTo(ResourcePolicy.Allocation.Mode.STATIC);
    assertThat(p.pool()).isEqualTo("tiny");
  }

  @Test
  void taskGpusAboveExecutorGpus() {
    assertThat(parse("p", Map.of("executor", Map.of("gpus", 1), "task", Map.of("gpus", 2))).problems())
        .containsExactly("wf.yaml: policy 'p' field 'task.gpus': 2 is more than the executor's 1 GPU(s) "
            + "(expected at most executor.gpus)");
  }

  @Test
  void fractionThatDoesNotDivideOneGpu() {
    assertThat(parse("p", Map.of("executor", Map.of("gpus", 1, "cores", 4), "task", Map.of("gpus", 0.3)))
        .problems())
        .containsExactly("wf.yaml: policy 'p' field 'task.gpus': 0.3 does not divide one GPU evenly (expected 1/n "
            + "of a GPU, e.g. 0.5, 0.25 or 0.125, or a whole number)");
  }

  @Test
  void unknownFieldsEverywhere() {
    assertThat(parse("p", Map.of("executor", Map.of("gpu", 1), "colour", "red")).problems())
        .containsExactlyInAnyOrder(
            "wf.yaml: policy 'p' field 'executor.gpu': unknown field (expected one of: cores, memory, "
                + "memory_overhead, gpus, gpu_type)",
            "wf.yaml: policy 'p' field 'colour': unknown field (expected one of: executor, task, allocation, "
                + "market, pool, priority, rapids, collectives)");
  }

  @Test
  void allocationAndValueProblems() {
    List<String> problems = parse("p", Map.of(
        "executor", Map.of("memory", "lots"),
        "allocation", Map.of("mode", "dynamic", "min", 3, "max", 2, "executors", 4),
        "market", "cheap")).problems();
    assertThat(problems).containsExactlyInAnyOrder(
        "wf.yaml: policy 'p' field 'executor.memory': 'lots' is not a memory size (expected e.g. 512m, 8g or 8gb)",
        "wf.yaml: policy 'p' field 'allocation.executors': only applies to mode static (expected min, max, initial "
            + "for mode dynamic)",
        "wf.yaml: policy 'p' field 'allocation.min': 3 is more than allocation.max 2 (expected min <= max)",
        "wf.yaml: policy 'p' field 'market': unknown market 'cheap' (expected on_demand or spot)");
  }

  @Test
  void collectivesIntegrity() {
    assertThat(parse("p", Map.of()).policies().get("p").collectives().integrity()).isEmpty();
    for (String mode : List.of("mac", "encrypt", "none", "MAC")) {
      Policies.Parsed p = parse("p", Map.of("collectives", Map.of("integrity", mode)));
      assertThat(p.problems()).isEmpty();
      assertThat(p.policies().get("p").collectives().integrity()).contains(mode.toLowerCase(java.util.Locale.ROOT));
    }
    assertThat(parse("p", Map.of("collectives", Map.of("integrity", "sign"))).problems()).containsExactly(
        "wf.yaml: policy 'p' field 'collectives.integrity': unknown mode 'sign' (expected one of: mac, encrypt, "
            + "none)");
    assertThat(parse("p", Map.of("collectives", Map.of("integirty", "mac"))).problems()).containsExactly(
        "wf.yaml: policy 'p' field 'collectives.integirty': unknown field (expected one of: integrity)");
    assertThat(parse("p", Map.of("collectives", "mac")).problems()).containsExactly(
        "wf.yaml: policy 'p' field 'collectives': is a value 'mac' (expected a map with some of: integrity)");
  }

  @Test
  void sizesAndDurations() {
    assertThat(Policies.Sizes.mebibytes("8g")).contains(8192L);
    assertThat(Policies.Sizes.mebibytes("512")).contains(512L);
    assertThat(Policies.Sizes.mebibytes("2gb")).contains(2048L);
    assertThat(Policies.Sizes.duration("2m")).contains(Duration.ofMinutes(2));
    assertThat(Policies.Sizes.duration("500ms")).contains(Duration.ofMillis(500));
    assertThat(Policies.dividesOne(0.125)).isTrue();
    assertThat(Policies.dividesOne(0.4)).isFalse();
  }
}
