package dev.stagecraft.policies.sizing;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.spi.SizingTraits;
import java.util.List;
import java.util.Optional;

/**
 * What right-sizing knows about one step of a new run.
 *
 * @param kind the step's kind, for messages (the decision reads {@code traits}, never the kind's name)
 * @param traits what the step's kind says about it: how it recovers from a lost executor (spot only for steps that
 *     re-run lost tasks or resume from a known checkpoint interval), its gang of tasks, whether tasks may share a GPU
 * @param deadlineSeconds time the step may take, if it has a deadline (the workflow's, or its own)
 * @param budget most the step may cost (catalog currency), if any
 * @param history earlier succeeded runs of the step, newest first
 * @param inputRows rows of the tables the step's upstream steps wrote in this run (0 when unknown): the step's time
 *     is scaled from history by the ratio of input rows
 */
public record SizingRequest(
    String step,
    String kind,
    SizingTraits traits,
    ResourcePolicy policy,
    Optional<Double> deadlineSeconds,
    Optional<Double> budget,
    List<StepObservation> history,
    double inputRows) {

  public SizingRequest {
    requireNonNull(step, "step is null");
    requireNonNull(kind, "kind is null");
    requireNonNull(traits, "traits is null");
    requireNonNull(policy, "policy is null");
    requireNonNull(deadlineSeconds, "deadlineSeconds is null");
    requireNonNull(budget, "budget is null");
    history = List.copyOf(history);
  }
}
