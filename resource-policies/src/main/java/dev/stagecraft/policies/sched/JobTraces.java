package dev.stagecraft.policies.sched;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.spi.StagecraftException;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads Gavel's Philly-derived job traces (tab-separated: job type, command, step-count flag, needs-data-dir flag,
 * total steps, arrival seconds, scale factor) and turns them into {@link SimJob}s.
 *
 * <p>The model, kept simple on purpose (README, "bench schedule"): a job's duration is its total steps divided by its
 * model family's steps per second alone on one V100 (Gavel's measured throughputs; batch size ignored), run on
 * {@code scale factor} GPUs; its deadline is its arrival plus {@code slack} times that duration.
 */
public final class JobTraces {
  /** A trace line as it is. */
  public record TraceJob(int id, String type, long steps, double arrival, int gpus) {
    /** The model family: the type without its "(batch size N)". */
    public String family() {
      int p = type.indexOf(" (");
      return p < 0 ? type : type.substring(0, p);
    }
  }

  private JobTraces() {}

  public static List<TraceJob> readGavel(InputStream in, String source) throws IOException {
    List<TraceJob> out = new ArrayList<>();
    BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
    String line;
    int n = 0;
    while ((line = r.readLine()) != null) {
      n++;
      if (line.isBlank()) {
        continue;
      }
      String[] f = line.split("\t", -1);
      if (f.length != 7) {
        throw StagecraftException.user("Invalid job trace %s line %d: %d tab-separated fields (expected 7: type, "
            + "command, steps flag, data-dir flag, total steps, arrival seconds, scale factor)", source, n, f.length);
      }
      try {
        out.add(new TraceJob(out.size(), f[0], Long.parseLong(f[4].trim()), Double.parseDouble(f[5].trim()),
            Integer.parseInt(f[6].trim())));
      } catch (NumberFormatException e) {
        throw StagecraftException.user("Invalid job trace %s line %d: %s (expected integer steps, numeric arrival "
            + "seconds and an integer scale factor)", source, n, e.getMessage());
      }
    }
    return out;
  }

  /** Steps per second by model family, from a JSON object {@code {"steps_per_second": {family: rate}}}. */
  public static Map<String, Double> readThroughputs(InputStream in, String source) throws IOException {
    JsonNode root = new ObjectMapper().readTree(in);
    JsonNode rates = root == null ? null : root.get("steps_per_second");
    if (rates == null || !rates.isObject()) {
      throw StagecraftException.user("Invalid throughput file %s: no 'steps_per_second' map", source);
    }
    Map<String, Double> out = new LinkedHashMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = rates.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      out.put(e.getKey(), e.getValue().asDouble());
    }
    return out;
  }

  /** Durations from the throughputs, deadlines at {@code slack} times the duration after arrival. */
  public static List<SimJob> toJobs(List<TraceJob> trace, Map<String, Double> stepsPerSecond, double slack) {
    if (slack < 1) {
      throw StagecraftException.user("Invalid deadline slack: %s (expected at least 1: a deadline no sooner than the "
          + "job's own duration)", slack);
    }
    List<SimJob> out = new ArrayList<>();
    for (TraceJob t : trace) {
      Double rate = stepsPerSecond.get(t.family());
      if (rate == null || rate <= 0) {
        throw StagecraftException.user("Cannot replay job %d: no throughput for model family '%s' (expected one of: "
            + "%s)", t.id(), t.family(), String.join(", ", stepsPerSecond.keySet()));
      }
      double duration = t.steps() / rate;
      out.add(new SimJob(t.id(), t.type(), t.arrival(), duration, t.gpus(), t.arrival() + slack * duration));
    }
    return out;
  }

  /** The built-in trace (a resource beside this class, under {@code traces/}). */
  public static InputStream resource(String name) {
    InputStream in = JobTraces.class.getResourceAsStream("traces/" + name);
    if (in == null) {
      throw StagecraftException.user("Cannot find built-in trace '%s'", name);
    }
    return in;
  }
}
