package dev.stagecraft.policies.cost;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.policies.ResourcePolicy.Market;
import java.util.List;
import java.util.Optional;

/**
 * What a run used, as recorded: executor lifetimes, task times, the steps' time windows and the lives of the
 * applications' drivers (epoch milliseconds). Engine-agnostic; {@code cost.spark.CostListener} records it from Spark's
 * events.
 */
public record Usage(long start, long end, List<Executor> executors, List<Task> tasks, List<Window> steps,
    List<Driver> drivers) {
  public Usage {
    executors = List.copyOf(executors);
    tasks = List.copyOf(tasks);
    steps = List.copyOf(steps);
    drivers = List.copyOf(drivers);
  }

  /** Usage with no driver of its own (local mode, where the driver is the one executor). */
  public Usage(long start, long end, List<Executor> executors, List<Task> tasks, List<Window> steps) {
    this(start, end, executors, tasks, steps, List.of());
  }

  /**
   * This usage with that of another application the run launched (a step run as its own Spark application): its
   * executors, tasks and driver are added with ids prefixed {@code prefix + "/"} (every application has an executor
   * "1" and a "driver"); its step windows are not (the run's own windows cover its steps).
   */
  public Usage with(String prefix, Usage other) {
    List<Executor> ex = new java.util.ArrayList<>(executors);
    other.executors().forEach(e -> ex.add(new Executor(prefix + "/" + e.id(), e.profile(), e.cores(), e.memoryMib(),
        e.gpus(), e.gpuType(), e.market(), e.start(), e.end())));
    List<Task> ts = new java.util.ArrayList<>(tasks);
    other.tasks().forEach(t -> ts.add(new Task(prefix + "/" + t.executor(), t.step(), t.stage(), t.profile(),
        t.start(), t.end(), t.gpus())));
    List<Driver> ds = new java.util.ArrayList<>(drivers);
    other.drivers().forEach(d -> ds.add(new Driver(prefix + "/" + d.id(), d.cores(), d.memoryMib(), d.gpus(),
        d.gpuType(), d.start(), d.end())));
    return new Usage(Math.min(start, other.start()), Math.max(end, other.end()), ex, ts, steps, ds);
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

  /**
   * One application's driver: its resources (cores, memory with overhead, GPUs) and the part of its life this usage
   * bills. It runs no task, so it belongs to no step.
   */
  public record Driver(String id, int cores, long memoryMib, int gpus, Optional<String> gpuType, long start,
      long end) {
    public Driver {
      requireNonNull(id, "id is null");
      requireNonNull(gpuType, "gpuType is null");
    }
  }

  /** One finished task attempt of a step's stage, on an executor; {@code gpus} is its task GPU amount. */
  public record Task(String executor, String step, int stage, int profile, long start, long end, double gpus) {}

  /** When a step ran (its attempt, as the engine saw it). */
  public record Window(String step, long start, long end) {}
}
