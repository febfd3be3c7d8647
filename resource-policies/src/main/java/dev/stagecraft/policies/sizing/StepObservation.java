package dev.stagecraft.policies.sizing;

import static java.util.Objects.requireNonNull;

import java.util.Optional;

/**
 * What one earlier, succeeded run of a step showed: from its ledger entry (wall time, rows or training steps, the
 * deadline it had) and its run's cost report (executor-seconds busy and idle while it ran, task time, GPU use).
 *
 * @param seconds the step's wall time
 * @param busyExecutorSeconds executor time running at least one of the step's tasks
 * @param idleExecutorSeconds executor time alive but running no task, charged to the step
 * @param work rows the step wrote (its table output); 0 when unknown
 * @param inputRows rows of the tables its upstream steps wrote in that run; 0 when unknown
 * @param gpuUtilisation task GPU-seconds ÷ GPU-seconds alive, when the step had GPUs
 * @param deadlineSeconds the deadline the step had in that run, if any
 */
public record StepObservation(
    String runId,
    double seconds,
    double busyExecutorSeconds,
    double idleExecutorSeconds,
    double taskSeconds,
    double work,
    double inputRows,
    Optional<Double> gpuUtilisation,
    Optional<Double> deadlineSeconds) {

  public StepObservation {
    requireNonNull(runId, "runId is null");
    requireNonNull(gpuUtilisation, "gpuUtilisation is null");
    requireNonNull(deadlineSeconds, "deadlineSeconds is null");
    if (seconds <= 0 || busyExecutorSeconds < 0 || idleExecutorSeconds < 0) {
      throw new IllegalArgumentException("Invalid observation of run " + runId + ": " + seconds + " s, busy "
          + busyExecutorSeconds + ", idle " + idleExecutorSeconds + " (expected positive time, no negative seconds)");
    }
  }

  /** Executors alive on average while the step ran. */
  public double executors() {
    return (busyExecutorSeconds + idleExecutorSeconds) / seconds;
  }

  /** Executors busy on average while the step ran: the parallelism the step actually used. */
  public double busyExecutors() {
    return busyExecutorSeconds / seconds;
  }

  public boolean missedDeadline() {
    return deadlineSeconds.isPresent() && seconds > deadlineSeconds.get();
  }
}
