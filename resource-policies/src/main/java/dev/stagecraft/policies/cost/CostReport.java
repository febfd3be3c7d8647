package dev.stagecraft.policies.cost;

import com.fasterxml.jackson.annotation.JsonProperty;
import dev.stagecraft.policies.ResourcePolicy.Market;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * A run's cost: every executor's lifetime × its catalog price, split over the steps, plus every application's driver
 * (its life × its on-demand price), which is an item of its own: a driver runs no task, so no step owns it.
 *
 * <p>Attribution, per executor, over each interval between consecutive events (task start/end, step start/end):
 * while tasks run on it the interval is <em>busy</em> and split equally among the running tasks' steps; otherwise it is
 * <em>idle</em> (alive but running no task) and split equally among the steps running at that time, or charged to
 * {@value #BETWEEN} when none is. So the steps' costs add up exactly to the executors' lifetime costs, and the
 * total is that plus the drivers' ({@code total.driver_cost}).
 * GPU utilisation = task GPU-seconds (task time × the task's GPU amount) ÷ GPU-seconds of the executors' lifetimes.
 */
public record CostReport(
    String currency,
    @JsonProperty("price_catalog") String priceCatalog,
    @JsonProperty("prices_as_of") String pricesAsOf,
    double seconds,
    Line total,
    Map<String, Line> steps,
    List<ExecutorCost> executors,
    List<DriverCost> drivers) {

  public static final String BETWEEN = "(between steps)";
  /** How the drivers' cost is labelled beside the steps (tables, charts): no step owns it. */
  public static final String DRIVERS = "(drivers)";

  public CostReport {
    drivers = drivers == null ? List.of() : List.copyOf(drivers); // reports written before drivers were billed
  }

  /** Cost and time of a step or of the whole run; only the run's total has a driver cost. */
  public record Line(
      double cost,
      @JsonProperty("busy_cost") double busyCost,
      @JsonProperty("idle_cost") double idleCost,
      @JsonProperty("driver_cost") double driverCost,
      @JsonProperty("busy_executor_seconds") double busySeconds,
      @JsonProperty("idle_executor_seconds") double idleSeconds,
      @JsonProperty("task_seconds") double taskSeconds,
      @JsonProperty("gpu_seconds") double gpuSeconds,
      @JsonProperty("idle_gpu_cost") double idleGpuCost,
      @JsonProperty("gpu_task_seconds") double gpuTaskSeconds,
      @JsonProperty("gpu_utilisation") Double gpuUtilisation) {}

  /** One executor's lifetime and price. */
  public record ExecutorCost(
      String id,
      @JsonProperty("resource_profile") int profile,
      int cores,
      @JsonProperty("memory_mib") long memoryMib,
      int gpus,
      @JsonProperty("gpu_type") String gpuType,
      String market,
      long start,
      long end,
      double seconds,
      @JsonProperty("price_per_hour") double pricePerHour,
      double cost,
      @JsonProperty("busy_seconds") double busySeconds,
      @JsonProperty("peak_concurrent_tasks") int peakConcurrentTasks) {}

  /** One application's driver: its life, its resources and its on-demand price. */
  public record DriverCost(
      String id,
      int cores,
      @JsonProperty("memory_mib") long memoryMib,
      int gpus,
      @JsonProperty("gpu_type") String gpuType,
      String market,
      long start,
      long end,
      double seconds,
      @JsonProperty("price_per_hour") double pricePerHour,
      double cost) {}

  private static final class Acc {
    double busyCost, idleCost, driverCost, busy, idle, tasks, gpuSeconds, idleGpuCost, gpuTaskSeconds;

    Line line() {
      return new Line(busyCost + idleCost + driverCost, busyCost, idleCost, driverCost, busy, idle, tasks, gpuSeconds,
          idleGpuCost, gpuTaskSeconds, gpuSeconds > 0 ? Math.min(1.0, gpuTaskSeconds / gpuSeconds) : null);
    }
  }

  public static CostReport compute(PriceCatalog catalog, Usage usage) {
    Map<String, Acc> steps = new LinkedHashMap<>();
    usage.steps().forEach(w -> steps.computeIfAbsent(w.step(), k -> new Acc()));
    Acc total = new Acc();
    List<ExecutorCost> executors = new ArrayList<>();
    for (Usage.Executor ex : usage.executors()) {
      long from = Math.max(ex.start(), usage.start());
      long to = Math.min(ex.end(), usage.end());
      if (to <= from) {
        continue;
      }
      double price = catalog.hourly(ex.cores(), ex.memoryMib(), ex.gpus(), ex.gpuType(), ex.market());
      double gpuPrice = ex.gpus() == 0 ? 0
          : price - catalog.hourly(ex.cores(), ex.memoryMib(), 0, ex.gpuType(), ex.market());
      List<Usage.Task> tasks = usage.tasks().stream().filter(t -> t.executor().equals(ex.id())).toList();
      TreeSet<Long> cuts = new TreeSet<>(List.of(from, to));
      for (Usage.Task t : tasks) {
        cuts.add(clamp(t.start(), from, to));
        cuts.add(clamp(t.end(), from, to));
        Acc a = steps.computeIfAbsent(t.step(), k -> new Acc());
        double secs = (clamp(t.end(), from, to) - clamp(t.start(), from, to)) / 1000.0;
        a.tasks += secs;
        total.tasks += secs;
        if (ex.gpus() > 0) {
          a.gpuTaskSeconds += secs * t.gpus();
          total.gpuTaskSeconds += secs * t.gpus();
        }
      }
      for (Usage.Window w : usage.steps()) {
        cuts.add(clamp(w.start(), from, to));
        cuts.add(clamp(w.end(), from, to));
      }
      double busySeconds = 0;
      int peak = 0;
      Long prev = null;
      for (long cut : cuts) {
        if (prev != null && cut > prev) {
          long a = prev;
          long b = cut;
          double secs = (b - a) / 1000.0;
          double cost = price * secs / 3600;
          List<String> running = tasks.stream().filter(t -> t.start() <= a && t.end() >= b).map(Usage.Task::step)
              .toList();
          boolean busy = !running.isEmpty();
          peak = Math.max(peak, running.size());
          List<String> owners = busy ? running
              : usage.steps().stream().filter(w -> w.start() <= a && w.end() >= b).map(Usage.Window::step).toList();
          if (owners.isEmpty()) {
            owners = List.of(BETWEEN);
          }
          if (busy) {
            busySeconds += secs;
          }
          for (String owner : owners) {
            Acc acc = steps.computeIfAbsent(owner, k -> new Acc());
            add(acc, busy, secs / owners.size(), cost / owners.size(), ex.gpus(), gpuPrice * secs / 3600
                / owners.size());
          }
          add(total, busy, secs, cost, ex.gpus(), gpuPrice * secs / 3600);
        }
        prev = cut;
      }
      executors.add(new ExecutorCost(ex.id(), ex.profile(), ex.cores(), ex.memoryMib(), ex.gpus(),
          ex.gpuType().orElse(ex.gpus() > 0 ? catalog.defaultGpu() : null), ex.market().key(), from, to,
          (to - from) / 1000.0, price, price * (to - from) / 3_600_000.0, busySeconds, peak));
    }
    List<DriverCost> drivers = new ArrayList<>();
    for (Usage.Driver d : usage.drivers()) {
      DriverCost c = driver(catalog, d);
      drivers.add(c);
      total.driverCost += c.cost();
    }
    Map<String, Line> lines = new LinkedHashMap<>();
    steps.forEach((k, v) -> lines.put(k, v.line()));
    return new CostReport(catalog.currency(), catalog.name(), catalog.asOf(), (usage.end() - usage.start()) / 1000.0,
        total.line(), lines, executors, drivers);
  }

  /**
   * A driver's cost over the life its usage records. Always on-demand prices, whatever market the executors are bought
   * on: losing the driver loses the whole application (every executor, every running step), where losing an executor
   * loses only its tasks, so clusters that mix in spot machines keep drivers off them (Dataproc schedules application
   * masters only on its primary, non-preemptible workers; EMR runs them on core nodes, which it advises buying
   * on-demand).
   */
  private static DriverCost driver(PriceCatalog catalog, Usage.Driver d) {
    double price = catalog.hourly(d.cores(), d.memoryMib(), d.gpus(), d.gpuType(), Market.ON_DEMAND);
    long life = Math.max(0, d.end() - d.start());
    return new DriverCost(d.id(), d.cores(), d.memoryMib(), d.gpus(),
        d.gpuType().orElse(d.gpus() > 0 ? catalog.defaultGpu() : null), Market.ON_DEMAND.key(), d.start(), d.end(),
        life / 1000.0, price, price * life / 3_600_000.0);
  }

  private static void add(Acc acc, boolean busy, double secs, double cost, int gpus, double gpuCost) {
    if (busy) {
      acc.busy += secs;
      acc.busyCost += cost;
    } else {
      acc.idle += secs;
      acc.idleCost += cost;
      acc.idleGpuCost += gpuCost;
    }
    acc.gpuSeconds += secs * gpus;
  }

  private static long clamp(long v, long lo, long hi) {
    return Math.max(lo, Math.min(hi, v));
  }
}
