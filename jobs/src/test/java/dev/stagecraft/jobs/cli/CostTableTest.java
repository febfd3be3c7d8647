package dev.stagecraft.jobs.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.policies.cost.Usage;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** The cost table shows the drivers' cost on a line of its own, in the total; with no driver item, no such line. */
class CostTableTest {
  private static final Usage.Executor EXECUTOR = new Usage.Executor("1", 0, 2, 2048, 0, Optional.empty(),
      Market.SPOT, 0, 60_000);

  private static String table(Usage usage) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    CostTable.print("r1", CostReport.compute(PriceCatalog.builtIn(), usage), "ws/runs/r1",
        new PrintStream(bytes, true, StandardCharsets.UTF_8));
    return bytes.toString(StandardCharsets.UTF_8);
  }

  @Test
  void theDriversHaveALineOfTheirOwnInTheTotal() {
    Usage usage = new Usage(0, 60_000, List.of(EXECUTOR), List.of(new Usage.Task("1", "s", 0, 0, 0, 60_000, 0)),
        List.of(new Usage.Window("s", 0, 60_000)),
        List.of(new Usage.Driver("driver", 1, 1408, 0, Optional.empty(), -10_000, 60_000)));
    CostReport r = CostReport.compute(PriceCatalog.builtIn(), usage);
    String out = table(usage);
    assertThat(out).containsPattern("\\(drivers\\)\\s+" + String.format(Locale.ROOT, "%.6f", r.total().driverCost())
        + "\\s+-");
    assertThat(out).containsPattern("total\\s+" + String.format(Locale.ROOT, "%.6f", r.total().cost()));
    assertThat(out).contains("1 executor(s), 1 driver(s) on demand;");
  }

  @Test
  void withoutADriverItemThereIsNoDriversLine() {
    String out = table(new Usage(0, 60_000, List.of(EXECUTOR), List.of(), List.of()));
    assertThat(out).doesNotContain("(drivers)").contains("1 executor(s); idle GPU cost");
  }
}
