package dev.stagecraft.jobs.cli;

import dev.stagecraft.policies.cost.CostReport;
import java.io.PrintStream;
import java.util.Locale;
import java.util.Map;

/**
 * The cost report as a table: per step and for the run, cost (busy + idle), executor time and GPU utilisation; the
 * drivers' cost on a line of its own, in the total.
 */
public final class CostTable {
  private CostTable() {}

  public static void print(String runId, CostReport r, String location, PrintStream out) {
    out.printf(Locale.ROOT, "Cost of run %s: %s %.6f over %.1f s (prices: %s, as of %s)%n", runId, r.currency(),
        r.total().cost(), r.seconds(), r.priceCatalog(), r.pricesAsOf());
    int w = Math.max(16, r.steps().keySet().stream().mapToInt(String::length).max().orElse(4) + 2);
    String fmt = "%-" + w + "s %12s %12s %12s %9s %9s %9s %8s%n";
    out.printf(Locale.ROOT, fmt, "step", "cost", "busy cost", "idle cost", "busy s", "idle s", "task s", "GPU use");
    for (Map.Entry<String, CostReport.Line> e : r.steps().entrySet()) {
      row(out, fmt, e.getKey(), e.getValue());
    }
    if (!r.drivers().isEmpty()) {
      out.printf(Locale.ROOT, fmt, CostReport.DRIVERS, money(r.total().driverCost()), "-", "-", "-", "-", "-", "-");
    }
    row(out, fmt, "total", r.total());
    // In local mode the driver is the one executor: no driver line of its own.
    String drivers = r.drivers().isEmpty() ? "" : String.format(Locale.ROOT, ", %d driver(s) on demand",
        r.drivers().size());
    out.printf(Locale.ROOT, "%d executor(s)%s; idle GPU cost %.6f. Details: %s/cost.json, chart: %s/cost.png%n",
        r.executors().size(), drivers, r.total().idleGpuCost(), location, location);
  }

  private static void row(PrintStream out, String fmt, String name, CostReport.Line l) {
    out.printf(Locale.ROOT, fmt, name, money(l.cost()), money(l.busyCost()), money(l.idleCost()),
        String.format(Locale.ROOT, "%.1f", l.busySeconds()), String.format(Locale.ROOT, "%.1f", l.idleSeconds()),
        String.format(Locale.ROOT, "%.1f", l.taskSeconds()),
        l.gpuUtilisation() == null ? "-" : String.format(Locale.ROOT, "%.0f%%", 100 * l.gpuUtilisation()));
  }

  private static String money(double v) {
    return String.format(Locale.ROOT, "%.6f", v);
  }
}
