package dev.stagecraft.testing;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import java.util.TreeSet;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The fixture itself: two workers with one fake GPU each; each task gets a distinct GPU address. */
class StandaloneClusterIT {
  @TempDir Path dir;

  @Test
  void tasksReceiveDistinctGpuAddressesFromTheWorkersDiscoveryScripts() throws Exception {
    try (StandaloneCluster cluster = StandaloneCluster.start(dir, 2, 1, 1)) {
      SparkSession spark = cluster.session("fixture-test", 1, true).getOrCreate();
      try {
        awaitExecutors(spark, 2);
        JavaRDD<Integer> rdd = new JavaSparkContext(spark.sparkContext()).parallelize(List.of(1, 2), 2);
        List<String> gpus = rdd.map(x -> TaskContext.get().resources().get("gpu").get().addresses()[0]).collect();
        assertThat(new TreeSet<>(gpus)).containsExactly("0", "1");
        assertThat(cluster.executors()).hasSize(2);
      } finally {
        spark.stop();
      }
    }
  }

  /**
   * Tasks start as soon as the first executor registers, and a task that finishes before the second one registers
   * frees its slot for the next, so both can run on one executor (seen on the Spark 4 line, twice in a row).
   */
  private static void awaitExecutors(SparkSession spark, int n) throws InterruptedException {
    long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(60);
    while (spark.sparkContext().getExecutorIds().size() < n) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("only executors " + spark.sparkContext().getExecutorIds() + " registered in 60 s");
      }
      Thread.sleep(100);
    }
  }
}
