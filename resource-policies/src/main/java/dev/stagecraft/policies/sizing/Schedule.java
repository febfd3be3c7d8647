package dev.stagecraft.policies.sizing;

import static java.util.Objects.requireNonNull;

import java.util.Optional;

/**
 * The scheduling fields of a workflow or of one step: {@code deadline}, {@code budget} (most it may cost, in the
 * price catalog's currency) and {@code sizing} ({@code auto}: right-size from earlier runs; {@code as_written}:
 * the policy as it is). A step's empty fields take the workflow's.
 */
public record Schedule(Optional<Deadline> deadline, Optional<Double> budget, Optional<Sizing> sizing) {
  public static final Schedule NONE = new Schedule(Optional.empty(), Optional.empty(), Optional.empty());

  /** How a step's resources are chosen. */
  public enum Sizing {
    AUTO,
    AS_WRITTEN;

    public String key() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }

    public static Optional<Sizing> parse(String s) {
      for (Sizing v : values()) {
        if (v.key().equals(s.trim())) {
          return Optional.of(v);
        }
      }
      return Optional.empty();
    }
  }

  public Schedule {
    requireNonNull(deadline, "deadline is null");
    requireNonNull(budget, "budget is null");
    requireNonNull(sizing, "sizing is null");
  }

  /** This step's fields, the workflow's where the step has none. */
  public Schedule orElse(Schedule workflow) {
    return new Schedule(deadline.or(workflow::deadline), budget.or(workflow::budget), sizing.or(workflow::sizing));
  }

  public boolean autoSizing() {
    return sizing.orElse(Sizing.AS_WRITTEN) == Sizing.AUTO;
  }
}
