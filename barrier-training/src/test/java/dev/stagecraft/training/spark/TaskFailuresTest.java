package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowable;

import dev.stagecraft.testing.LocalSpark;
import java.util.List;
import org.apache.spark.SparkContext;
import org.apache.spark.api.java.JavaSparkContext;
import org.junit.jupiter.api.Test;

class TaskFailuresTest {
  /** A job of one task that throws {@code message}; the job's failure. */
  static Exception failingJob(JavaSparkContext jsc, String message) {
    Throwable t = catchThrowable(() -> jsc.parallelize(List.of(1), 1).map(x -> {
      throw new IllegalStateException(message);
    }).collect());
    return (Exception) t;
  }

  @Test
  void explainsTheWatchingThreadsJobWithItsTasksOwnExceptionNotAnotherStepsRunningBeside() throws Exception {
    SparkContext sc = LocalSpark.get().sparkContext();
    JavaSparkContext jsc = JavaSparkContext.fromSparkContext(sc);
    // Another step's job, on a thread of its own (made before the watch: Spark's local properties are inherited by
    // threads made after), fails while this one is watched, and before this one's.
    Thread other = new Thread(() -> failingJob(jsc, "another step's task"));
    try (TaskFailures failures = TaskFailures.watch(sc)) {
      other.start();
      other.join();
      Exception jobFailure = failingJob(jsc, "this stage's task");
      assertThat(jobFailure).isInstanceOf(org.apache.spark.SparkException.class);
      Exception explained = failures.explain(jobFailure);
      assertThat(explained).isInstanceOf(IllegalStateException.class).hasMessage("this stage's task");
      assertThat(explained.getSuppressed()).containsExactly(jobFailure);
    }
    assertThat(sc.getLocalProperty("stagecraft.barrier.watch")).as("the thread's tag is taken back").isNull();
  }
}
