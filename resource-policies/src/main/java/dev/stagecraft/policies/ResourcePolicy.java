package dev.stagecraft.policies;

import static java.util.Objects.requireNonNull;

import java.time.Duration;
import java.util.Optional;

/**
 * A named resource policy: what a step's executors and tasks need, how executors are allocated, what market they are
 * bought on, and the FAIR scheduler pool the step's jobs run in. Engine-agnostic: {@code policy.spark} turns it into
 * Spark settings and {@code ResourceProfile}s.
 *
 * @param priority the FAIR pool's weight (1 = Spark's default)
 */
public record ResourcePolicy(
    String name,
    Executor executor,
    Task task,
    Allocation allocation,
    Market market,
    String pool,
    int priority,
    Rapids rapids) {

  public ResourcePolicy {
    requireNonNull(name, "name is null");
    requireNonNull(executor, "executor is null");
    requireNonNull(task, "task is null");
    requireNonNull(allocation, "allocation is null");
    requireNonNull(market, "market is null");
    requireNonNull(pool, "pool is null");
    requireNonNull(rapids, "rapids is null");
  }

  /** Executor resources. Memory in MiB; {@code gpuType} names a GPU in the price catalog (e.g. {@code t4}). */
  public record Executor(int cores, long memoryMib, long memoryOverheadMib, int gpus, Optional<String> gpuType) {
    public Executor {
      requireNonNull(gpuType, "gpuType is null");
    }
  }

  /** Per-task resources; {@code gpus} may be a fraction (0.25 = four tasks share one GPU). */
  public record Task(int cpus, double gpus) {}

  /** Static executors, or dynamic allocation between {@code min} and {@code max}. */
  public record Allocation(Mode mode, int executors, int min, int max, int initial, Duration idleTimeout) {
    public enum Mode {
      STATIC,
      DYNAMIC
    }

    public Allocation {
      requireNonNull(mode, "mode is null");
      requireNonNull(idleTimeout, "idleTimeout is null");
    }

    public boolean dynamic() {
      return mode == Mode.DYNAMIC;
    }
  }

  public enum Market {
    ON_DEMAND,
    SPOT;

    public String key() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  /** The RAPIDS Accelerator for the step's SQL: on or off, and how many tasks may use one GPU at once. */
  public record Rapids(boolean enabled, int concurrentGpuTasks) {}

  /** True if the policy's executors carry GPUs. */
  public boolean usesGpus() {
    return executor.gpus() > 0;
  }
}
