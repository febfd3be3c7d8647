package dev.stagecraft.policies.sizing;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.policies.ResourcePolicy;
import java.util.List;
import java.util.Optional;

/**
 * What right-sizing knows about one step of a new run.
 *
 * @param kind the step's kind: {@code train} (spot only with checkpoints), {@code infer}, {@code sql}, {@code load}
 *     (idempotent: spot allowed) or another (never spot)
 * @param deadlineSeconds time the step may take, if it has a deadline (the workflow's, or its own)
 * @param budget most the step may cost (catalog currency), if any
 * @param checkpointSeconds for a checkpointing step, the work a preemption can lose at most
 * @param history earlier succeeded runs of the step, newest first
 * @param inputRows rows of the tables the step's upstream steps wrote in this run (0 when unknown): the step's time
 *     is scaled from history by the ratio of input rows
 * @param gangTasks tasks that must run at once (a barrier step's workers), 0 if none: the executors must hold them
 */
public record SizingRequest(
    String step,
    String kind,
    ResourcePolicy policy,
    Optional<Double> deadlineSeconds,
    Optional<Double> budget,
    Optional<Double> checkpointSeconds,
    List<StepObservation> history,
    double inputRows,
    int gangTasks) {

  public SizingRequest {
    requireNonNull(step, "step is null");
    requireNonNull(kind, "kind is null");
    requireNonNull(policy, "policy is null");
    requireNonNull(deadlineSeconds, "deadlineSeconds is null");
    requireNonNull(budget, "budget is null");
    requireNonNull(checkpointSeconds, "checkpointSeconds is null");
    history = List.copyOf(history);
    if (gangTasks < 0) {
      throw new IllegalArgumentException("Invalid gang size: " + gangTasks + " (expected 0 or more tasks)");
    }
  }
}
