package dev.stagecraft.policies.cost;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.stagecraft.policies.ResourcePolicy.Market;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class CostReportTest {
  private final PriceCatalog prices = PriceCatalog.builtIn();

  @Test
  void builtInCatalogHasSourcesAndDate() {
    assertThat(prices.asOf()).matches("\\d{4}-\\d{2}-\\d{2}");
    assertThat(prices.onDemand().source()).startsWith("https://");
    assertThat(prices.spot().source()).startsWith("https://");
    assertThat(prices.spot().gpuHour().get("t4")).isLessThan(prices.onDemand().gpuHour().get("t4"));
  }

  @Test
  void stepsAddUpToLifetimesTimesPrices() {
    // cpu executor lives 0..100 s; gpu executor (spot t4) 40..90 s. sql runs 0..40, infer 40..80.
    Usage.Executor cpu = new Usage.Executor("1", 0, 4, 8192, 0, Optional.empty(), Market.ON_DEMAND, 0, 100_000);
    Usage.Executor gpu = new Usage.Executor("2", 1, 4, 16384, 1, Optional.of("t4"), Market.SPOT, 40_000, 90_000);
    Usage usage = new Usage(0, 100_000, List.of(cpu, gpu),
        List.of(new Usage.Task("1", "sql", 0, 0, 0, 30_000, 0),
            new Usage.Task("2", "infer", 1, 1, 40_000, 60_000, 0.5),
            new Usage.Task("2", "infer", 1, 1, 40_000, 60_000, 0.5)),
        List.of(new Usage.Window("sql", 0, 40_000), new Usage.Window("infer", 40_000, 80_000)));
    CostReport r = CostReport.compute(prices, usage);

    double cpuPrice = 4 * 0.031611 + 8 * 0.004237;
    double gpuPrice = 4 * 0.00765 + 16 * 0.001025 + 0.14;
    double expected = cpuPrice * 100 / 3600 + gpuPrice * 50 / 3600;
    assertThat(r.total().cost()).isCloseTo(expected, within(1e-12));
    assertThat(r.executors()).extracting(CostReport.ExecutorCost::cost)
        .containsExactly(cpuPrice * 100 / 3600, gpuPrice * 50 / 3600);
    double sum = r.steps().values().stream().mapToDouble(CostReport.Line::cost).sum();
    assertThat(sum).isCloseTo(expected, within(1e-12));

    // sql: cpu busy 30 s, idle 10 s; infer: cpu idle 40 s, gpu busy 20 s + idle 20 s; between: cpu 20 s, gpu 10 s.
    CostReport.Line sql = r.steps().get("sql");
    assertThat(sql.busySeconds()).isCloseTo(30, within(1e-9));
    assertThat(sql.idleSeconds()).isCloseTo(10, within(1e-9));
    CostReport.Line infer = r.steps().get("infer");
    assertThat(infer.busySeconds()).isCloseTo(20, within(1e-9));
    assertThat(infer.idleSeconds()).isCloseTo(60, within(1e-9));
    assertThat(infer.gpuSeconds()).isCloseTo(40, within(1e-9));
    assertThat(infer.gpuTaskSeconds()).isCloseTo(20, within(1e-9)); // two tasks × 20 s × 0.5 GPU
    assertThat(infer.gpuUtilisation()).isCloseTo(0.5, within(1e-9));
    assertThat(infer.idleGpuCost()).isCloseTo(0.14 * 20 / 3600, within(1e-12));
    assertThat(r.steps().get(CostReport.BETWEEN).idleSeconds()).isCloseTo(30, within(1e-9));
    assertThat(r.total().gpuUtilisation()).isCloseTo(20.0 / 50, within(1e-9));
    assertThat(r.executors()).extracting(CostReport.ExecutorCost::peakConcurrentTasks).containsExactly(1, 2);
    assertThat(sql.gpuUtilisation()).isNull();
  }

  @Test
  void aLaunchedApplicationsUsageAddsItsExecutorsUnderItsOwnIds() {
    // The run's application: executor "1" (cpu, 0..100 s), step fit's window 20..80 s while it only waits.
    Usage run = new Usage(0, 100_000,
        List.of(new Usage.Executor("1", 0, 4, 8192, 0, Optional.empty(), Market.ON_DEMAND, 0, 100_000)),
        List.of(), List.of(new Usage.Window("fit", 20_000, 80_000)));
    // fit's own application: its executor "1" too (every application numbers from 1), a GPU, 25..75 s.
    Usage fit = new Usage(22_000, 78_000,
        List.of(new Usage.Executor("1", 0, 4, 16384, 1, Optional.of("t4"), Market.ON_DEMAND, 25_000, 75_000)),
        List.of(new Usage.Task("1", "fit", 0, 0, 30_000, 70_000, 1)),
        List.of(new Usage.Window("fit", 22_000, 78_000)));

    Usage merged = run.with("fit-attempt-1", fit);
    assertThat(merged.executors()).extracting(Usage.Executor::id).containsExactly("1", "fit-attempt-1/1");
    assertThat(merged.tasks()).extracting(Usage.Task::executor).containsExactly("fit-attempt-1/1");
    assertThat(merged.steps()).hasSize(1);
    CostReport r = CostReport.compute(prices, merged);
    double cpu = (4 * 0.031611 + 8 * 0.004237) * 100 / 3600;
    double gpu = (4 * 0.031611 + 16 * 0.004237 + 0.35) * 50 / 3600;
    assertThat(r.executors()).extracting(CostReport.ExecutorCost::cost).containsExactly(cpu, gpu);
    assertThat(r.total().cost()).isCloseTo(cpu + gpu, within(1e-12));
    // The GPU's 40 busy seconds of 50 belong to fit; the waiting run's CPU executor is idle in fit's window.
    assertThat(r.steps().get("fit").busySeconds()).isCloseTo(40, within(1e-9));
    assertThat(r.steps().get("fit").gpuUtilisation()).isCloseTo(40.0 / 50, within(1e-9));
  }
}
