package dev.stagecraft.policies.sched;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;

/**
 * A spot availability trace of one zone ("Can't Be Late" format: {@code {"metadata": {"gap_seconds": G}, "data":
 * [n, …]}}, the number of spot instances obtainable at each tick). Above zero: spot capacity is there; zero: none,
 * and instances running there are preempted. Replayed cyclically from an offset.
 */
public record SpotTrace(String name, double gapSeconds, int[] data) {
  public SpotTrace {
    if (gapSeconds <= 0 || data.length == 0) {
      throw new IllegalArgumentException("Invalid spot trace " + name + ": gap " + gapSeconds + " s, " + data.length
          + " ticks (expected a positive gap and at least one tick)");
    }
    data = data.clone();
  }

  public static SpotTrace read(InputStream in, String name) throws IOException {
    JsonNode root = new ObjectMapper().readTree(in);
    JsonNode gap = root == null ? null : root.path("metadata").get("gap_seconds");
    JsonNode data = root == null ? null : root.get("data");
    if (gap == null || data == null || !data.isArray()) {
      throw StagecraftException.user("Invalid spot trace %s: expected {\"metadata\": {\"gap_seconds\": …}, "
          + "\"data\": [ … ]}", name);
    }
    int[] d = new int[data.size()];
    for (int i = 0; i < d.length; i++) {
      d[i] = data.get(i).asInt();
    }
    return new SpotTrace(name, gap.asDouble(), d);
  }

  public double lengthSeconds() {
    return gapSeconds * data.length;
  }

  /** Spot capacity at {@code t} seconds into the replay that starts {@code offset} seconds into the trace. */
  public boolean available(double t, double offset) {
    long tick = (long) Math.floor((t + offset) / gapSeconds);
    return data[(int) Math.floorMod(tick, (long) data.length)] > 0;
  }

  /** Share of ticks with capacity. */
  public double availableShare() {
    int up = 0;
    for (int v : data) {
      up += v > 0 ? 1 : 0;
    }
    return up / (double) data.length;
  }

  /**
   * Mean seconds of capacity between two losses of it (the trace read as a cycle); infinite when it is never lost,
   * zero when it is never there.
   */
  public double meanSecondsBetweenPreemptions() {
    int losses = 0;
    int up = 0;
    for (int i = 0; i < data.length; i++) {
      boolean now = data[i] > 0;
      boolean before = data[Math.floorMod(i - 1, data.length)] > 0;
      up += now ? 1 : 0;
      losses += before && !now ? 1 : 0;
    }
    if (up == 0) {
      return 0;
    }
    return losses == 0 ? Double.POSITIVE_INFINITY : up * gapSeconds / losses;
  }
}
