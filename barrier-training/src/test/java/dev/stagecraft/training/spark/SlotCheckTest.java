package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;

import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

class SlotCheckTest {
  @Test
  void enoughSlotsIsFine() {
    assertThat(SlotCheck.problem("train", 2, 2, new SparkConf(false))).isEmpty();
  }

  @Test
  void tooFewSlotsSaysWhatIsMissingAndWhatToChange() {
    SparkConf conf = new SparkConf(false).set("spark.master", "spark://h:7077")
        .set("spark.task.resource.gpu.amount", "1");
    assertThat(SlotCheck.problem("train", 3, 2, conf)).contains("Cannot start train step 'train': it needs 3 barrier "
        + "tasks at once (workers: 3) but the cluster offers 2 task slots (spark.task.cpus=1, "
        + "spark.task.resource.gpu.amount=1, master spark://h:7077); lower 'workers' or add executors");
  }

  @Test
  void dynamicAllocationIsRefused() {
    SparkConf conf = new SparkConf(false).set("spark.dynamicAllocation.enabled", "true");
    assertThat(SlotCheck.problem("fit", 1, 8, conf).orElseThrow())
        .startsWith("Cannot start train step 'fit': barrier stages cannot run with dynamic allocation");
  }
}
