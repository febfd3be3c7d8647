package dev.stagecraft.jobs.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.chart.BarChart;
import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.jobs.ledger.Json;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.policies.cost.Usage;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
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
        List.of("busy", "idle", "driver"));
    for (Map.Entry<String, CostReport.Line> e : report.steps().entrySet()) {
      chart.add(new BarChart.Bar(e.getKey(), new double[] {e.getValue().busyCost(), e.getValue().idleCost(), 0}));
    }
    if (!report.drivers().isEmpty()) {
      chart.add(new BarChart.Bar(CostReport.DRIVERS, new double[] {0, 0, report.total().driverCost()}));
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

  /**
   * Writes what a launched application used (executor lifetimes, tasks) for the run that launched it to merge into
   * its report ({@link #readUsage}).
   */
  public static void writeUsage(Workspace ws, Path file, Usage usage) {
    ObjectNode root = Json.MAPPER.createObjectNode().put("start", usage.start()).put("end", usage.end());
    ArrayNode ex = root.putArray("executors");
    for (Usage.Executor e : usage.executors()) {
      ex.addObject().put("id", e.id()).put("profile", e.profile()).put("cores", e.cores())
          .put("memory_mib", e.memoryMib()).put("gpus", e.gpus()).put("gpu_type", e.gpuType().orElse(null))
          .put("market", e.market().name()).put("start", e.start()).put("end", e.end());
    }
    ArrayNode ts = root.putArray("tasks");
    for (Usage.Task t : usage.tasks()) {
      ts.addObject().put("executor", t.executor()).put("step", t.step()).put("stage", t.stage())
          .put("profile", t.profile()).put("start", t.start()).put("end", t.end()).put("gpus", t.gpus());
    }
    ArrayNode ws2 = root.putArray("steps");
    for (Usage.Window w : usage.steps()) {
      ws2.addObject().put("step", w.step()).put("start", w.start()).put("end", w.end());
    }
    ArrayNode ds = root.putArray("drivers");
    for (Usage.Driver d : usage.drivers()) {
      ds.addObject().put("id", d.id()).put("cores", d.cores()).put("memory_mib", d.memoryMib()).put("gpus", d.gpus())
          .put("gpu_type", d.gpuType().orElse(null)).put("start", d.start()).put("end", d.end());
    }
    try {
      AtomicFiles.write(ws.fs(), file, Json.MAPPER.writeValueAsBytes(root));
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot write the usage file %s: %s", file, e.getMessage());
    }
  }

  /** A usage file written by {@link #writeUsage}, if it exists. */
  public static Optional<Usage> readUsage(Workspace ws, Path file) {
    try {
      Optional<byte[]> bytes = AtomicFiles.read(ws.fs(), file);
      if (bytes.isEmpty()) {
        return Optional.empty();
      }
      JsonNode root = Json.MAPPER.readTree(bytes.get());
      List<Usage.Executor> ex = new ArrayList<>();
      for (JsonNode e : root.path("executors")) {
        ex.add(new Usage.Executor(e.path("id").asText(), e.path("profile").asInt(), e.path("cores").asInt(),
            e.path("memory_mib").asLong(), e.path("gpus").asInt(),
            e.path("gpu_type").isTextual() ? Optional.of(e.path("gpu_type").asText()) : Optional.empty(),
            ResourcePolicy.Market.valueOf(e.path("market").asText()),
            e.path("start").asLong(), e.path("end").asLong()));
      }
      List<Usage.Task> ts = new ArrayList<>();
      for (JsonNode t : root.path("tasks")) {
        ts.add(new Usage.Task(t.path("executor").asText(), t.path("step").asText(), t.path("stage").asInt(),
            t.path("profile").asInt(), t.path("start").asLong(), t.path("end").asLong(), t.path("gpus").asDouble()));
      }
      List<Usage.Window> windows = new ArrayList<>();
      for (JsonNode w : root.path("steps")) {
        windows.add(new Usage.Window(w.path("step").asText(), w.path("start").asLong(), w.path("end").asLong()));
      }
      List<Usage.Driver> drivers = new ArrayList<>();
      for (JsonNode d : root.path("drivers")) {
        drivers.add(new Usage.Driver(d.path("id").asText(), d.path("cores").asInt(), d.path("memory_mib").asLong(),
            d.path("gpus").asInt(), d.path("gpu_type").isTextual() ? Optional.of(d.path("gpu_type").asText())
            : Optional.empty(), d.path("start").asLong(), d.path("end").asLong()));
      }
      return Optional.of(new Usage(root.path("start").asLong(), root.path("end").asLong(), ex, ts, windows, drivers));
    } catch (IOException | IllegalArgumentException e) {
      throw StagecraftException.external(e, "Cannot read the usage file %s: %s", file, e.getMessage());
    }
  }
}
