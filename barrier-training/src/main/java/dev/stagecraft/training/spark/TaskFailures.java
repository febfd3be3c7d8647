package dev.stagecraft.training.spark;

import dev.stagecraft.training.collective.CollectiveException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.spark.ExceptionFailure;
import org.apache.spark.SparkContext;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskEnd;

/**
 * What the tasks of a barrier stage threw, as their executors reported it. When a barrier task fails, Spark aborts
 * the job with "barrier task ResultTask(7, 0) finished unsuccessfully" and nothing of the task's exception; the cause
 * the operator needs ("no data from rank 1 (198.18.0.12:33931) within 10s") arrives only in the task-end event.
 *
 * <p>Steps of a workflow run side by side in one application, so only the tasks of stages submitted by the watching
 * thread count: {@link #watch} tags that thread's jobs with a local property, which Spark hands to each stage-submitted
 * event.
 */
final class TaskFailures extends SparkListener implements AutoCloseable {
  /** How long to wait for the task-end event after the job failed: Spark's listener bus delivers asynchronously. */
  private static final Duration EVENT_WAIT = Duration.ofSeconds(3);
  /** How long to gather the other ranks' failures after the first: they all time out within moments of each other. */
  private static final Duration GATHER = Duration.ofSeconds(1);

  /** A task's exception and its rank (the barrier task's partition). */
  private record Failed(int rank, Throwable exception) {}

  /** The local property whose value marks the watched thread's stages. */
  private static final String TAG = "stagecraft.barrier.watch";

  private final SparkContext sc;
  private final String tag = java.util.UUID.randomUUID().toString();
  private final String previousTag;
  private final java.util.Set<Integer> stages = java.util.concurrent.ConcurrentHashMap.newKeySet();
  private final List<Failed> failures = new ArrayList<>();

  private TaskFailures(SparkContext sc) {
    this.sc = sc;
    this.previousTag = sc.getLocalProperty(TAG);
  }

  /**
   * Starts collecting the failures of the tasks of the jobs this thread submits from now on, until {@link #close}
   * (call both on the same thread).
   */
  static TaskFailures watch(SparkContext sc) {
    TaskFailures f = new TaskFailures(sc);
    sc.addSparkListener(f);
    sc.setLocalProperty(TAG, f.tag);
    return f;
  }

  @Override
  public void onStageSubmitted(SparkListenerStageSubmitted submitted) {
    java.util.Properties p = submitted.properties();
    if (p != null && tag.equals(p.getProperty(TAG))) {
      stages.add(submitted.stageInfo().stageId());
    }
  }

  @Override
  public void onTaskEnd(SparkListenerTaskEnd end) {
    if (stages.contains(end.stageId()) && end.reason() instanceof ExceptionFailure f && f.exception().isDefined()) {
      synchronized (failures) {
        failures.add(new Failed(end.taskInfo().index(), f.exception().get()));
        failures.notifyAll();
      }
    }
  }

  /**
   * The exception that explains the failure, with the job's failure attached as suppressed; or {@code jobFailure}
   * itself when no task threw (an executor was lost, a task was killed) or the event did not come in time.
   *
   * <p>When a rank goes silent, every rank of the ring soon waits on its previous one and times out, each blaming its
   * own neighbour; whichever reaches the driver first is not necessarily the one next to the silent rank. The silent
   * rank itself reports nothing. So of the failures gathered, the one blaming a rank that reported no failure of its
   * own is chosen, else the first.
   */
  Exception explain(Exception jobFailure) throws InterruptedException {
    if (first(EVENT_WAIT).isEmpty()) {
      return jobFailure;
    }
    Thread.sleep(GATHER.toMillis());
    List<Failed> all;
    synchronized (failures) {
      all = List.copyOf(failures);
    }
    Throwable chosen = all.stream().filter(f -> blamesASilentRank(f, all)).findFirst().orElse(all.get(0)).exception();
    if (!(chosen instanceof Exception cause)) {
      return jobFailure;
    }
    cause.addSuppressed(jobFailure);
    return cause;
  }

  private static boolean blamesASilentRank(Failed f, List<Failed> all) {
    if (!(f.exception() instanceof CollectiveException c)) {
      return false;
    }
    return c.ranks().stream().anyMatch(r -> all.stream().noneMatch(other -> other.rank() == r));
  }

  private Optional<Failed> first(Duration wait) throws InterruptedException {
    long deadline = System.nanoTime() + wait.toNanos();
    synchronized (failures) {
      while (failures.isEmpty()) {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          return Optional.empty();
        }
        failures.wait(Math.max(1, left / 1_000_000));
      }
      return Optional.of(failures.get(0));
    }
  }

  @Override
  public void close() {
    sc.setLocalProperty(TAG, previousTag);
    sc.removeSparkListener(this);
  }
}
