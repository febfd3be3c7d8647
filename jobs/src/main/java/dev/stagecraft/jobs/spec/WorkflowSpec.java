package dev.stagecraft.jobs.spec;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.sizing.Schedule;
import dev.stagecraft.spi.StepConfig;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * A validated workflow: steps in file order, each with its direct upstream steps (from {@code after}, from
 * {@code ${steps.ID.…}} references and from what its kind reads implicitly, such as SQL table names).
 *
 * <p>Strings still hold their {@code ${…}} references; the engine substitutes them when a step runs.
 *
 * @param source the workflow file as the user named it
 * @param directory URI of the folder holding the workflow file (relative paths are resolved against it)
 * @param policies every policy a step may name: the built-ins and the workflow's own ({@code policies:})
 * @param schedule the workflow's {@code deadline}, {@code budget} and {@code sizing}
 * @param stepSchedules each step's own
 */
public record WorkflowSpec(
    String source,
    String directory,
    String name,
    Optional<String> workspace,
    Map<String, String> params,
    Map<String, ResourcePolicy> policies,
    List<StepConfig> steps,
    Map<String, Set<String>> upstream,
    Schedule schedule,
    Map<String, Schedule> stepSchedules) {

  public WorkflowSpec {
    requireNonNull(source, "source is null");
    requireNonNull(directory, "directory is null");
    requireNonNull(name, "name is null");
    requireNonNull(workspace, "workspace is null");
    params = Collections.unmodifiableMap(new LinkedHashMap<>(params));
    policies = Collections.unmodifiableMap(new LinkedHashMap<>(policies));
    steps = List.copyOf(steps);
    Map<String, Set<String>> copy = new LinkedHashMap<>();
    upstream.forEach((k, v) -> copy.put(k, Collections.unmodifiableSet(new LinkedHashSet<>(v))));
    upstream = Collections.unmodifiableMap(copy);
    requireNonNull(schedule, "schedule is null");
    stepSchedules = Collections.unmodifiableMap(new LinkedHashMap<>(stepSchedules));
  }

  /** The step's own scheduling fields (its deadline counts from the step's start), without the workflow's. */
  public Schedule stepSchedule(String id) {
    return stepSchedules.getOrDefault(id, Schedule.NONE);
  }

  public StepConfig step(String id) {
    return steps.stream()
        .filter(s -> s.id().equals(id))
        .findFirst()
        .orElseThrow(() -> new IllegalArgumentException("no step " + id));
  }

  /** The policy a step names, if it names one (the loader checked that it exists). */
  public Optional<ResourcePolicy> policyOf(StepConfig step) {
    return step.policy().map(policies::get);
  }

  public Optional<StepConfig> findStep(String id) {
    return steps.stream().filter(s -> s.id().equals(id)).findFirst();
  }

  /** Every step {@code id} depends on, directly or not. */
  public Set<String> allUpstream(String id) {
    Set<String> seen = new LinkedHashSet<>();
    Deque<String> todo = new ArrayDeque<>(upstream.getOrDefault(id, Set.of()));
    while (!todo.isEmpty()) {
      String s = todo.pop();
      if (seen.add(s)) {
        todo.addAll(upstream.getOrDefault(s, Set.of()));
      }
    }
    return seen;
  }

  /** Every step that depends on {@code id}, directly or not. */
  public Set<String> allDownstream(String id) {
    Set<String> out = new LinkedHashSet<>();
    for (StepConfig s : steps) {
      if (allUpstream(s.id()).contains(id)) {
        out.add(s.id());
      }
    }
    return out;
  }

  /** Step ids in an order where every step comes after its upstream steps (file order among ready steps). */
  public List<String> order() {
    List<String> out = new ArrayList<>();
    Set<String> done = new LinkedHashSet<>();
    while (out.size() < steps.size()) {
      for (StepConfig s : steps) {
        if (!done.contains(s.id()) && done.containsAll(upstream.get(s.id()))) {
          done.add(s.id());
          out.add(s.id());
          break;
        }
      }
    }
    return out;
  }
}
