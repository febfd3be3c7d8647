package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.spi.StepConfig;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.function.Predicate;

/**
 * Which steps of a workflow run in the workflow's own Spark application and which as a Spark application of their
 * own. Dynamic allocation is an application setting, and Spark refuses barrier stages under it (SPARK-24942) and
 * executor-level resource profiles without it. So on a cluster, when some steps' policies allocate dynamically and
 * others statically, the static ones (barrier training, typically) run as their own application, launched through
 * Spark's launcher with their policy's settings, and so does a barrier step that names no policy; the rest share the
 * dynamic application. In local mode (one JVM) everything runs in-process.
 *
 * @param ownApplication ids of the steps that run as their own application, in workflow order
 */
public record Placement(Set<String> ownApplication) {
  /** Every step in the workflow's application. */
  public static final Placement IN_PROCESS = new Placement(Set.of());

  public Placement {
    ownApplication = Collections.unmodifiableSet(new LinkedHashSet<>(ownApplication));
  }

  /**
   * The placement of {@code spec}'s steps on {@code master}.
   *
   * @param barrier whether a step runs barrier stages (its kind's {@code barrier()})
   */
  public static Placement of(WorkflowSpec spec, String master, Predicate<StepConfig> barrier) {
    if (master.startsWith("local")) {
      return IN_PROCESS;
    }
    List<StepConfig> withPolicy = spec.steps().stream().filter(s -> s.policy().isPresent()).toList();
    boolean anyDynamic = withPolicy.stream().anyMatch(s -> dynamic(spec, s));
    if (!anyDynamic) {
      return IN_PROCESS;
    }
    Set<String> own = new LinkedHashSet<>();
    spec.steps().stream().filter(s -> s.policy().isPresent() ? !dynamic(spec, s) : barrier.test(s))
        .forEach(s -> own.add(s.id()));
    return new Placement(own);
  }

  private static boolean dynamic(WorkflowSpec spec, StepConfig s) {
    return spec.policyOf(s).map(p -> p.allocation().dynamic()).orElse(false);
  }

  public boolean ownApplication(String stepId) {
    return ownApplication.contains(stepId);
  }

  /** The policies of the steps that run in the workflow's application: what sizes it. */
  public List<ResourcePolicy> inAppPolicies(WorkflowSpec spec) {
    return spec.steps().stream().filter(s -> !ownApplication(s.id())).map(spec::policyOf)
        .flatMap(Optional::stream).distinct().toList();
  }
}
