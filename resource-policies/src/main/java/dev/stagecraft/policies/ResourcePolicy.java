package dev.stagecraft.policies;

import static java.util.Objects.requireNonNull;

import java.time.Duration;
import java.util.List;
import java.util.Optional;

/**
 * A named resource policy: what a step's executors and tasks need, how executors are allocated, what market they are
 * bought on, and the FAIR scheduler pool the step's jobs run in. Engine-agnostic: {@code policy.spark} turns it into
 * Spark settings and {@code ResourceProfile}s.
 *
 * @param priority the FAIR pool's weight (1 = Spark's default)
 * @param collectives how the collectives of the steps under it (the {@code train} step's ring all-reduce) protect
 *     their traffic
 */
public record ResourcePolicy(
    String name,
    Executor executor,
    Task task,
    Allocation allocation,
    Market market,
    String pool,
    int priority,
    Rapids rapids,
    Collectives collectives) {

  public ResourcePolicy {
    requireNonNull(name, "name is null");
    requireNonNull(executor, "executor is null");
    requireNonNull(task, "task is null");
    requireNonNull(allocation, "allocation is null");
    requireNonNull(market, "market is null");
    requireNonNull(pool, "pool is null");
    requireNonNull(rapids, "rapids is null");
    requireNonNull(collectives, "collectives is null");
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

  /**
   * The collectives' settings. {@code integrity}: how the ring's frames are protected after the handshake, one of
   * {@link #INTEGRITY_MODES}; empty: the train step's default ({@code encrypt}).
   */
  public record Collectives(Optional<String> integrity) {
    public static final List<String> INTEGRITY_MODES = List.of("mac", "encrypt", "none");
    /** Nothing set: every collective's default. */
    public static final Collectives DEFAULT = new Collectives(Optional.empty());

    public Collectives {
      requireNonNull(integrity, "integrity is null");
      integrity.ifPresent(mode -> {
        if (!INTEGRITY_MODES.contains(mode)) {
          throw new IllegalArgumentException(
              "Invalid integrity '" + mode + "' (expected one of: " + String.join(", ", INTEGRITY_MODES) + ")");
        }
      });
    }
  }

  /** True if the policy's executors carry GPUs. */
  public boolean usesGpus() {
    return executor.gpus() > 0;
  }
}
