package dev.stagecraft.policies.sched;

import java.util.Collections;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * What one scheduling policy did with a trace.
 *
 * @param cost billed GPU-hours times their market's price
 * @param busyGpuHours GPU-hours that ran work (including work later lost)
 * @param lostGpuHours GPU-hours of work lost to preemptions, evictions and moves from spot to on demand (run again
 *     after the restart)
 * @param preemptions spot capacity lost under a running job
 * @param evictions running jobs the policy stopped itself to make room for an urgent one
 * @param completions job id → completion time (seconds)
 * @param missed ids of jobs that finished after their deadline
 * @param spotStarts (re)starts on spot capacity
 */
public record PolicyResult(
    String policy,
    double cost,
    double onDemandGpuHours,
    double spotGpuHours,
    double busyGpuHours,
    double lostGpuHours,
    double meanJctSeconds,
    double p99JctSeconds,
    double makespanSeconds,
    int preemptions,
    int evictions,
    int spotStarts,
    SortedSet<Integer> missed,
    Map<Integer, Double> completions) {

  public PolicyResult {
    missed = Collections.unmodifiableSortedSet(new TreeSet<>(missed));
    completions = Collections.unmodifiableMap(new TreeMap<>(completions));
  }

  public double gpuHours() {
    return onDemandGpuHours + spotGpuHours;
  }

  public int deadlineMisses() {
    return missed.size();
  }

  /** Misses of this policy that {@code other} did not miss. */
  public int missesBeyond(PolicyResult other) {
    SortedSet<Integer> s = new TreeSet<>(missed);
    s.removeAll(other.missed());
    return s.size();
  }
}
