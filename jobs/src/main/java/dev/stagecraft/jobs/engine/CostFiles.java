package dev.stagecraft.jobs.engine;

import dev.stagecraft.chart.BarChart;
import dev.stagecraft.cost.CostReport;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.fs.Path;

/** A run's cost report in its workspace folder: {@code cost.json} and the chart {@code cost.png}. */
public final class CostFiles {
  private CostFiles() {}

  public static Path json(Workspace ws, String runId) {
    return new Path(ws.runDir(runId), "cost.json");
  }

  public static Path png(Workspace ws, String runId) {
    return new Path(ws.runDir(runId), "cost.png");
  }

  static void write(Workspace ws, String runId, CostReport report) {
    BarChart chart = new BarChart("Run " + runId + ": cost per step (" + report.currency() + ")", report.currency(),
        List.of("busy", "idle"));
    for (Map.Entry<String, CostReport.Line> e : report.steps().entrySet()) {
      chart.add(new BarChart.Bar(e.getKey(), new double[] {e.getValue().busyCost(), e.getValue().idleCost()}));
    }
    try {
      try (OutputStream out = ws.fs().create(json(ws, runId), true)) {
        out.write(Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(report));
      }
      try (OutputStream out = ws.fs().create(png(ws, runId), true)) {
        out.write(chart.png(900, 480));
      }
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot write the cost report of run '%s' to %s: %s", runId,
          ws.runDir(runId), e.getMessage());
    }
  }

  /** The run's cost report, if it has one. */
  public static Optional<CostReport> read(Workspace ws, String runId) {
    Path p = json(ws, runId);
    try {
      if (!ws.fs().exists(p)) {
        return Optional.empty();
      }
      try (InputStream in = ws.fs().open(p)) {
        return Optional.of(Json.MAPPER.readValue(in, CostReport.class));
      }
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read %s: %s", p, e.getMessage());
    }
  }
}
