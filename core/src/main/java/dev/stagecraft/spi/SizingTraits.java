package dev.stagecraft.spi;

import static java.util.Objects.requireNonNull;

import java.util.Optional;

/**
 * What right-sizing needs to know about a step beyond its history: what losing an executor (a spot preemption) costs
 * it, how many of its tasks must run at once, and whether its tasks may share a GPU. A kind says so for each step
 * with {@link StepKind#sizing}; the engine passes it to the sizer, which never looks at kind names.
 *
 * @param recovery what a lost executor costs the step
 * @param checkpointSeconds for {@link Recovery#RESUMES_FROM_CHECKPOINT}: the most work one preemption loses (the
 *     checkpoint interval), if known; without it the step is treated as one that starts over
 * @param gangTasks tasks that must all run at once (a barrier step's workers), 0 if none
 * @param gpuSharing true if several of the step's tasks may share one GPU when they keep it busy less than half the
 *     time (stateless scoring); false where each task needs a GPU of its own (a training worker)
 */
public record SizingTraits(Recovery recovery, Optional<Double> checkpointSeconds, int gangTasks, boolean gpuSharing) {

  /** What a lost executor costs a step. */
  public enum Recovery {
    /** Spark re-runs the lost tasks and the output is the same (an idempotent step): spot is safe to try. */
    RERUNS_LOST_TASKS,
    /** The step resumes from its last checkpoint: a preemption loses at most one checkpoint interval. */
    RESUMES_FROM_CHECKPOINT,
    /** The step loses all its work (or is not known to be idempotent): on demand only. */
    STARTS_OVER
  }

  /** A step nothing is known about: it starts over after a lost executor, no gang, no GPU sharing. */
  public static final SizingTraits UNKNOWN = new SizingTraits(Recovery.STARTS_OVER, Optional.empty(), 0, false);

  /** An idempotent step of independent tasks, such as a load or a SQL query. */
  public static final SizingTraits IDEMPOTENT =
      new SizingTraits(Recovery.RERUNS_LOST_TASKS, Optional.empty(), 0, false);

  public SizingTraits {
    requireNonNull(recovery, "recovery is null");
    requireNonNull(checkpointSeconds, "checkpointSeconds is null");
    if (gangTasks < 0) {
      throw new IllegalArgumentException("Invalid gang size: " + gangTasks + " (expected 0 or more tasks)");
    }
  }

  /** True if a preemption loses at most a known checkpoint interval. */
  public boolean checkpoints() {
    return recovery == Recovery.RESUMES_FROM_CHECKPOINT && checkpointSeconds.isPresent();
  }
}
