package dev.stagecraft.policies.cost.spark;

import static org.assertj.core.api.Assertions.assertThat;

import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

/** The driver's billed memory: spark.driver.memory plus its overhead, with Spark's defaults. */
class DriverMemoryTest {
  @Test
  void defaultsAreOneGibPlusTheMinimumOverhead() {
    assertThat(CostListener.driverMemoryMib(new SparkConf(false))).isEqualTo(1024 + 384);
  }

  @Test
  void overheadIsTenPercentOfALargeDriverUnlessSet() {
    SparkConf conf = new SparkConf(false).set("spark.driver.memory", "8g");
    assertThat(CostListener.driverMemoryMib(conf)).isEqualTo(8192 + 819);
    conf.set("spark.driver.memoryOverheadFactor", "0.2");
    assertThat(CostListener.driverMemoryMib(conf)).isEqualTo(8192 + 1638);
    conf.set("spark.driver.memoryOverhead", "1g");
    assertThat(CostListener.driverMemoryMib(conf)).isEqualTo(8192 + 1024);
  }
}
