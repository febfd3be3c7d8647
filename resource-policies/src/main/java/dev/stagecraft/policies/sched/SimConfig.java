package dev.stagecraft.policies.sched;

/**
 * The simulated cluster and its prices. Times in seconds, prices per GPU-hour.
 *
 * @param clusterGpus most GPUs alive at once, on either market
 * @param tickSeconds the simulation step: jobs start, and spot capacity is checked, at tick boundaries
 * @param startupSeconds from asking for new executors to their first task (billed): VM boot, executor start
 * @param idleTimeoutSeconds how long Spark's dynamic allocation keeps an idle executor (policy b; Spark's default 60)
 * @param checkpointSeconds every job checkpoints after this much work; a preemption loses the work since the last one
 * @param safetyMargin policy (c) keeps spot only while the slack to the deadline is at least this many times one
 *     preemption's worst cost (a checkpoint interval of lost work plus a restart): its safety net. Below it a job is
 *     urgent (first in line, on demand, may evict jobs with at least twice that slack to spare)
 */
public record SimConfig(
    int clusterGpus,
    double tickSeconds,
    double onDemandGpuHour,
    double spotGpuHour,
    double startupSeconds,
    double idleTimeoutSeconds,
    double checkpointSeconds,
    double safetyMargin) {

  public SimConfig {
    if (clusterGpus <= 0 || tickSeconds <= 0 || startupSeconds < 0 || idleTimeoutSeconds < 0
        || checkpointSeconds <= 0 || safetyMargin < 1 || onDemandGpuHour <= 0 || spotGpuHour <= 0) {
      throw new IllegalArgumentException("Invalid simulator settings: " + SimConfig.class.getSimpleName() + "["
          + "clusterGpus=" + clusterGpus + ", tickSeconds=" + tickSeconds + ", startupSeconds=" + startupSeconds
          + ", idleTimeoutSeconds=" + idleTimeoutSeconds + ", checkpointSeconds=" + checkpointSeconds
          + ", safetyMargin=" + safetyMargin + ", prices " + onDemandGpuHour + "/" + spotGpuHour + "] (expected "
          + "positive sizes, times and prices, no negative delays, a margin of at least 1)");
    }
  }

  /** The worst a preemption can cost a job in time: a checkpoint interval of lost work, then a restart. */
  public double preemptionSeconds() {
    return checkpointSeconds + startupSeconds;
  }
}
