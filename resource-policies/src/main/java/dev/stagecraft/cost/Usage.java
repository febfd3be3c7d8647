package dev.stagecraft.cost;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.policy.ResourcePolicy.Market;
import java.util.List;
import java.util.Optional;

/**
 * What a run used, as recorded: executor lifetimes, task times and the steps' time windows (epoch milliseconds).
 * Engine-agnostic; {@code cost.spark.CostListener} records it from Spark's events.
 */
public record Usage(long start, long end, List<Executor> executors, List<Task> tasks, List<Window> steps) {
  public Usage {
    executors = List.copyOf(executors);
    tasks = List.copyOf(tasks);
    steps = List.copyOf(steps);
  }

  /** One executor's life: its resources, its resource profile and the market its policy buys it on. */
  public record Executor(String id, int profile, int cores, long memoryMib, int gpus, Optional<String> gpuType,
      Market market, long start, long end) {
    public Executor {
      requireNonNull(id, "id is null");
      requireNonNull(gpuType, "gpuType is null");
      requireNonNull(market, "market is null");
    }
  }

  /** One finished task attempt of a step's stage, on an executor; {@code gpus} is its task GPU amount. */
  public record Task(String executor, String step, int stage, int profile, long start, long end, double gpus) {}

  /** When a step ran (its attempt, as the engine saw it). */
  public record Window(String step, long start, long end) {}
}
