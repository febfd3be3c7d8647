package dev.stagecraft.training.spark;

import dev.stagecraft.training.collective.WaitTimes;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The ranks' all-reduce waits as the step's details show them: who waited on whom, and which rank's links held the
 * ring back. In a ring every rank ends up waiting about as long as the slowest one, so time spent waiting says little;
 * what points at the culprit is time spent inside frames that had begun to arrive (the link from the previous rank is
 * slow) and time spent unable to send (the link to the next rank is slow). A rank with a slow link of its own has both
 * of its ring links slow; its neighbours have one each. With two ranks both links join the same two hosts, so which of
 * them is slow cannot be told, and no rank is named.
 */
final class RingWaits {
  private RingWaits() {}

  /** One entry per rank, in rank order. */
  static List<Map<String, Object>> perRank(List<TrainTask.Outcome> outcomes) {
    List<Map<String, Object>> out = new ArrayList<>();
    for (TrainTask.Outcome o : outcomes) {
      WaitTimes w = o.waits();
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("rank", o.rank());
      m.put("host", o.host());
      m.put("waited_for_rank", w.previous());
      m.put("before_frame_s", round(w.beforeFrameSeconds()));
      m.put("inside_frame_s", round(w.inFrameSeconds()));
      m.put("sending_to_rank", w.next());
      m.put("sending_s", round(w.sendingSeconds()));
      out.add(m);
    }
    return out;
  }

  /**
   * The rank whose two ring links account for the most waiting (frames arriving slowly from it or into it, sends to
   * it or from it blocked), with those seconds; empty with fewer than three ranks, or when no rank's links held the
   * ring back for a millisecond (then every wait was for compute).
   */
  static Map<String, Object> slowest(List<TrainTask.Outcome> outcomes) {
    int n = outcomes.size();
    if (n < 3) {
      return Map.of();
    }
    WaitTimes[] w = new WaitTimes[n];
    String[] hosts = new String[n];
    for (TrainTask.Outcome o : outcomes) {
      w[o.rank()] = o.waits();
      hosts[o.rank()] = o.host();
    }
    int worst = -1;
    double worstSeconds = -1;
    for (int r = 0; r < n; r++) {
      int prev = w[r].previous();
      int next = w[r].next();
      // link prev→r: r waited inside frames, prev waited to send; link r→next likewise.
      double seconds = w[r].inFrameSeconds() + w[prev].sendingSeconds() + w[next].inFrameSeconds()
          + w[r].sendingSeconds();
      if (seconds > worstSeconds) {
        worst = r;
        worstSeconds = seconds;
      }
    }
    if (worstSeconds < 0.001) {
      return Map.of();
    }
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("rank", worst);
    m.put("host", hosts[worst]);
    m.put("link_wait_s", round(worstSeconds));
    return m;
  }

  private static double round(double seconds) {
    return Math.round(seconds * 1000) / 1000.0;
  }
}
