package dev.stagecraft.policies.sched;

/**
 * One job the simulator replays: it arrives at {@code arrival}, needs {@code gpus} GPUs for {@code duration} seconds of
 * work (uninterrupted, on those GPUs) and should finish by {@code deadline}. Times in seconds.
 */
public record SimJob(int id, String type, double arrival, double duration, int gpus, double deadline) {
  public SimJob {
    if (duration <= 0 || gpus <= 0 || deadline < arrival) {
      throw new IllegalArgumentException("Invalid job " + id + ": duration " + duration + " s, gpus " + gpus
          + ", arrival " + arrival + ", deadline " + deadline + " (expected duration > 0, gpus > 0, deadline >= "
          + "arrival)");
    }
  }

  /** GPU-seconds of work: what any policy must at least pay for. */
  public double gpuSeconds() {
    return duration * gpus;
  }
}
