package dev.stagecraft.policies.sizing;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.ResourcePolicy.Market;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What right-sizing chose for a step, and why: the policy to run it under, and the numbers the choice used (recorded
 * in the ledger as they are).
 *
 * @param fromHistory false when the policy is used as written (no usable history)
 * @param numbers the inputs and estimates behind the choice, by name
 */
public record SizingDecision(
    String step,
    boolean fromHistory,
    ResourcePolicy policy,
    int executors,
    double taskGpus,
    Market market,
    String reason,
    Map<String, Object> numbers) {

  public SizingDecision {
    requireNonNull(step, "step is null");
    requireNonNull(policy, "policy is null");
    requireNonNull(market, "market is null");
    requireNonNull(reason, "reason is null");
    numbers = Collections.unmodifiableMap(new LinkedHashMap<>(numbers));
  }

  /** The decision as the ledger records it. */
  public Map<String, Object> toMap() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("mode", fromHistory ? "auto" : "policy as written");
    m.put("policy", policy.name());
    m.put("executors", executors);
    m.put("task_gpus", taskGpus);
    m.put("market", market.key());
    m.put("reason", reason);
    m.put("numbers", numbers);
    return m;
  }
}
