package dev.stagecraft.training.spark;

import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.time.Duration;
import java.util.Optional;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.apache.spark.resource.ResourceProfile;

/**
 * Checks, before a barrier stage is submitted, that the cluster can run all its tasks at once — instead of Spark's
 * own check, which retries silently ({@code spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures} × interval,
 * 40 × 15 s by default, SPARK-24819) before it fails.
 */
public final class SlotCheck {
  /** How long the slot count must stay put, once executors are there, before too few slots is final. */
  public static final Duration STABLE = Duration.ofSeconds(5);

  private SlotCheck() {}

  /**
   * Why {@code workers} barrier tasks cannot start under {@code conf} with {@code slots} free task slots, or empty if
   * they can. A pure function of the configuration, tested without a cluster.
   */
  public static Optional<String> problem(String step, int workers, int slots, SparkConf conf) {
    if (conf.getBoolean("spark.dynamicAllocation.enabled", false)) {
      // SPARK-24942: Spark refuses barrier stages under dynamic allocation.
      return Optional.of("Cannot start train step '" + step + "': barrier stages cannot run with dynamic allocation "
          + "(spark.dynamicAllocation.enabled=true, SPARK-24942); give the step a static-allocation policy");
    }
    if (workers <= slots) {
      return Optional.empty();
    }
    String gpu = conf.get("spark.task.resource.gpu.amount", "");
    String limits = "spark.task.cpus=" + conf.get("spark.task.cpus", "1")
        + (gpu.isEmpty() ? "" : ", spark.task.resource.gpu.amount=" + gpu);
    return Optional.of("Cannot start train step '" + step + "': it needs " + workers + " barrier tasks at once "
        + "(workers: " + workers + ") but the cluster offers " + slots + " task slot" + (slots == 1 ? "" : "s")
        + " (" + limits + ", master " + conf.get("spark.master", "?") + "); lower 'workers' or add executors");
  }

  /**
   * Fails fast if the cluster cannot run {@code workers} tasks at once. Executors of a fresh application may still be
   * registering: waits until their number settles ({@link #STABLE}), or up to {@code wait} if none has come.
   *
   * @throws StagecraftException (resource) with what is missing and what to change
   */
  public static void require(SparkContext sc, String step, int workers, Duration wait) {
    require(sc, step, workers, wait, STABLE);
  }

  /**
   * As {@link #require(SparkContext, String, int, Duration)}, giving up early once the slot count has not changed for
   * {@code settle}. After workers were lost the cluster had the slots a moment ago and replacement executors take a
   * while to start: retries pass {@code settle = wait}.
   */
  public static void require(SparkContext sc, String step, int workers, Duration wait, Duration settle) {
    long deadline = System.nanoTime() + wait.toNanos();
    int seen = -1;
    long stableSince = System.nanoTime();
    while (true) {
      int slots = slots(sc);
      Optional<String> problem = problem(step, workers, slots, sc.getConf());
      if (problem.isEmpty()) {
        return;
      }
      if (slots != seen) {
        seen = slots;
        stableSince = System.nanoTime();
      }
      // Executors of a fresh application register over a few seconds: give up once some are there and their
      // number has not changed for STABLE, or when none came within `wait`.
      boolean settled = slots > 0 && System.nanoTime() - stableSince > settle.toNanos();
      boolean hopeless = sc.getConf().getBoolean("spark.dynamicAllocation.enabled", false) || sc.isLocal();
      if (hopeless || settled || System.nanoTime() > deadline) {
        throw new StagecraftException(ErrorCategory.RESOURCE, problem.get());
      }
      try {
        Thread.sleep(200);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new StagecraftException(ErrorCategory.INTERNAL, "Interrupted while waiting for executors", e);
      }
    }
  }

  /**
   * Task slots free for the default resource profile — what Spark's own barrier check counts (CPUs and custom
   * resources such as GPUs per executor, divided by the task's needs).
   */
  static int slots(SparkContext sc) {
    ResourceProfile rp = sc.resourceProfileManager().defaultResourceProfile();
    return sc.maxNumConcurrentTasks(rp); // private[spark] in Scala, public in bytecode: Spark's own slot count
  }
}
