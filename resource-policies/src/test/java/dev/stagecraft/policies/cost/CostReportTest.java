package dev.stagecraft.policies.cost;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.stagecraft.policies.ResourcePolicy.Market;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class CostReportTest {
  private final PriceCatalog prices = PriceCatalog.builtIn();
  private final PriceCatalog.Rates onDemand = prices.onDemand();
  private final PriceCatalog.Rates spot = prices.spot();

  /** An executor-hour of this shape at these rates, computed here from the catalog's own figures. */
  private static double hourly(PriceCatalog.Rates r, int cores, double gib, int t4s) {
    return cores * r.cpuCoreHour() + gib * r.memoryGbHour() + t4s * r.gpuHour().get("t4");
  }

  @Test
  void builtInCatalogHasSourcesAndDate() {
    assertThat(prices.asOf()).matches("\\d{4}-\\d{2}-\\d{2}");
    for (PriceCatalog.Rates r : List.of(onDemand, spot)) {
      // Every figure is in a group with its page and copy date, and says whether it was read there (the constructor
      // refuses a catalog where one does not).
      assertThat(r.sources()).isNotEmpty().allSatisfy(g -> {
        assertThat(g.url()).startsWith("https://");
        assertThat(g.copyDate()).isNotBlank();
      });
      assertThat(r.status()).containsKeys("cpu_core_hour", "memory_gb_hour", "gpu_hour.t4");
    }
    assertThat(prices.spot().gpuHour().get("t4")).isLessThan(prices.onDemand().gpuHour().get("t4"));
  }

  @Test
  void aCatalogThatLeavesAFigureWithoutStatusIsRefused() throws Exception {
    String json;
    try (var in = PriceCatalog.class.getResourceAsStream("prices.json")) {
      json = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
    }
    String noStatus = json.replaceFirst("\"gpu_hour\\.l4\": \"[^\"]*\",\\s*", "");
    assertThat(noStatus).isNotEqualTo(json);
    assertThatThrownBy(() -> PriceCatalog.read(new java.io.ByteArrayInputStream(noStatus.getBytes(
        java.nio.charset.StandardCharsets.UTF_8)), "test")).hasMessageContaining("status must give every figure");
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

    double cpuPrice = hourly(onDemand, 4, 8, 0);
    double gpuPrice = hourly(spot, 4, 16, 1);
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
    assertThat(infer.idleGpuCost()).isCloseTo(spot.gpuHour().get("t4") * 20 / 3600, within(1e-12));
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
    double cpu = hourly(onDemand, 4, 8, 0) * 100 / 3600;
    double gpu = hourly(onDemand, 4, 16, 1) * 50 / 3600;
    assertThat(r.executors()).extracting(CostReport.ExecutorCost::cost).containsExactly(cpu, gpu);
    assertThat(r.total().cost()).isCloseTo(cpu + gpu, within(1e-12));
    // The GPU's 40 busy seconds of 50 belong to fit; the waiting run's CPU executor is idle in fit's window.
    assertThat(r.steps().get("fit").busySeconds()).isCloseTo(40, within(1e-9));
    assertThat(r.steps().get("fit").gpuUtilisation()).isCloseTo(40.0 / 50, within(1e-9));
  }

  @Test
  void driversAreBilledOnDemandForTheirWholeLifeAsTheirOwnItem() {
    // The run's application started at -5 s (its driver's life begins then, before the run's metering at 0); its one
    // executor is spot. fit's own application has a driver of its own, 20..80 s, and no executor here.
    Usage.Driver runDriver = new Usage.Driver("driver", 1, 1408, 0, Optional.empty(), -5_000, 100_000);
    Usage run = new Usage(0, 100_000,
        List.of(new Usage.Executor("1", 0, 4, 8192, 0, Optional.empty(), Market.SPOT, 0, 100_000)),
        List.of(new Usage.Task("1", "sql", 0, 0, 0, 60_000, 0)), List.of(new Usage.Window("sql", 0, 60_000)),
        List.of(runDriver));
    Usage fit = new Usage(20_000, 80_000, List.of(), List.of(), List.of(),
        List.of(new Usage.Driver("driver", 2, 4096, 0, Optional.empty(), 20_000, 80_000)));
    CostReport r = CostReport.compute(prices, run.with("fit-attempt-1", fit));

    double executor = hourly(spot, 4, 8, 0) * 100 / 3600;
    double driver = hourly(onDemand, 1, 1408 / 1024.0, 0) * 105 / 3600;
    double fitDriver = hourly(onDemand, 2, 4, 0) * 60 / 3600;
    assertThat(r.drivers()).extracting(CostReport.DriverCost::id).containsExactly("driver", "fit-attempt-1/driver");
    assertThat(r.drivers()).allMatch(d -> d.market().equals("on_demand"));
    assertThat(r.drivers()).extracting(CostReport.DriverCost::seconds).containsExactly(105.0, 60.0);
    assertThat(r.drivers().get(0).cost()).isCloseTo(driver, within(1e-12));
    assertThat(r.drivers().get(1).cost()).isCloseTo(fitDriver, within(1e-12));
    // On-demand although the application's executors are spot: the driver costs more than its spot price would.
    assertThat(r.drivers().get(0).pricePerHour()).isGreaterThan(hourly(spot, 1, 1408 / 1024.0, 0));
    // Its own item: in the total, in no step; the steps still add up to the executors' lifetimes.
    assertThat(r.total().driverCost()).isCloseTo(driver + fitDriver, within(1e-12));
    assertThat(r.total().cost()).isCloseTo(executor + driver + fitDriver, within(1e-12));
    assertThat(r.total().busyCost() + r.total().idleCost()).isCloseTo(executor, within(1e-12));
    assertThat(r.steps().values()).allMatch(l -> l.driverCost() == 0);
    double steps = r.steps().values().stream().mapToDouble(CostReport.Line::cost).sum();
    assertThat(steps).isCloseTo(executor, within(1e-12));
  }
}
