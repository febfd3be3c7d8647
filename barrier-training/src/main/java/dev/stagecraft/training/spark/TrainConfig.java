package dev.stagecraft.training.spark;

import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.training.checkpoint.CheckpointPolicy;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Task;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;

/**
 * A {@code train} step's own fields read and checked: the {@code model} map, the {@code task} and the
 * {@code checkpoint} policy. Each check names the step and the field, down to the key ({@code checkpoint.keep},
 * {@code model.lr_schedule}). Values that still hold {@code ${…}} are checked only once substituted, when the step runs.
 */
final class TrainConfig {
  static final String SHUFFLE = "shuffle";
  static final String LR_SCHEDULE = "lr_schedule";
  static final List<String> TASKS = List.of("binary", "multiclass", "regression");
  static final List<String> CHECKPOINT_KEYS = List.of("every_steps", "every_seconds", "keep", "when_busy", "resume",
      "write_timeout_seconds");
  /** How long a worker waits for its peers when the step sets no {@code timeout_seconds}. */
  static final int DEFAULT_TIMEOUT_SECONDS = 120;

  private TrainConfig() {}

  /** The step's checkpoint policy; empty without a {@code checkpoint} map, or while it holds unsubstituted values. */
  static Optional<CheckpointPolicy> checkpointPolicy(StepConfig step) {
    Object raw = step.fields().get("checkpoint");
    if (raw == null) {
      return Optional.empty();
    }
    if (!(raw instanceof Map<?, ?> map)) {
      throw step.invalid("checkpoint", "is not a map (expected e.g. { every_steps: 200, keep: 2 })");
    }
    for (Object k : map.keySet()) {
      if (!CHECKPOINT_KEYS.contains(String.valueOf(k))) {
        throw step.invalid("checkpoint." + k, "unknown field (expected one of: " + String.join(", ", CHECKPOINT_KEYS)
            + ")");
      }
    }
    if (map.values().stream().anyMatch(v -> v != null && v.toString().contains("${"))) {
      return Optional.empty();
    }
    long everySteps = wholeNumber(step, map, "every_steps", 0);
    double everySeconds = number(step, map, "every_seconds", 0);
    long keep = wholeNumber(step, map, "keep", CheckpointPolicy.DEFAULT_KEEP);
    if (everySteps == 0 && everySeconds == 0) {
      throw step.invalid("checkpoint", "has neither every_steps nor every_seconds (expected at least one of them)");
    }
    if (keep < 1 || keep > 1000) {
      throw step.invalid("checkpoint.keep", keep + " (expected 1 to 1000)");
    }
    CheckpointPolicy.WhenBusy whenBusy;
    CheckpointPolicy.Resume resume;
    try {
      whenBusy = CheckpointPolicy.whenBusy(String.valueOf(map.containsKey("when_busy") ? map.get("when_busy")
          : "wait"));
    } catch (IllegalArgumentException e) {
      throw step.invalid("checkpoint.when_busy", e.getMessage());
    }
    try {
      resume = CheckpointPolicy.resume(String.valueOf(map.containsKey("resume") ? map.get("resume") : "latest"));
    } catch (IllegalArgumentException e) {
      throw step.invalid("checkpoint.resume", e.getMessage());
    }
    double writeTimeout = writeTimeout(step, map, whenBusy);
    return Optional.of(new CheckpointPolicy(everySteps, everySeconds, (int) keep, whenBusy, resume, writeTimeout));
  }

  /**
   * {@code checkpoint.write_timeout_seconds}: by default half the step's {@code timeout_seconds}; with
   * {@code when_busy: wait} it must stay below {@code timeout_seconds}, or the other workers, waiting for rank 0 in
   * the next collective while it waits for a stuck write, would give up on it first.
   */
  private static double writeTimeout(StepConfig step, Map<?, ?> map, CheckpointPolicy.WhenBusy whenBusy) {
    String rawTimeout = step.string("timeout_seconds").orElse(String.valueOf(DEFAULT_TIMEOUT_SECONDS));
    Integer collective = rawTimeout.contains("${") ? null : step.intValue("timeout_seconds", DEFAULT_TIMEOUT_SECONDS);
    if (!map.containsKey("write_timeout_seconds")) {
      return CheckpointPolicy.defaultWriteTimeoutSeconds(collective == null || collective < 1
          ? DEFAULT_TIMEOUT_SECONDS : collective);
    }
    double v = number(step, map, "write_timeout_seconds", 0);
    if (whenBusy == CheckpointPolicy.WhenBusy.WAIT && collective != null && v >= collective) {
      throw step.invalid("checkpoint.write_timeout_seconds", "'" + map.get("write_timeout_seconds") + "' (expected "
          + "less than the step's timeout_seconds, " + collective + ": with when_busy: wait the other workers wait "
          + "for rank 0 while it waits for a checkpoint write; or set when_busy: skip)");
    }
    return v;
  }

  private static long wholeNumber(StepConfig step, Map<?, ?> map, String key, long defaultValue) {
    Object v = map.get(key);
    if (v == null) {
      return defaultValue;
    }
    if (!(v instanceof Integer || v instanceof Long) || ((Number) v).longValue() < 1) {
      throw step.invalid("checkpoint." + key, "'" + v + "' (expected a whole number of at least 1)");
    }
    return ((Number) v).longValue();
  }

  private static double number(StepConfig step, Map<?, ?> map, String key, double defaultValue) {
    Object v = map.get(key);
    if (v == null) {
      return defaultValue;
    }
    if (!(v instanceof Number n) || !(n.doubleValue() > 0) || Double.isInfinite(n.doubleValue())) {
      throw step.invalid("checkpoint." + key, "'" + v + "' (expected a number of seconds above 0)");
    }
    return n.doubleValue();
  }

  static ModelSpec modelSpec(StepConfig step) {
    Map<String, Object> raw = modelMap(step);
    Set<String> allowed = new TreeSet<>(ModelSpec.KEYS);
    allowed.add(SHUFFLE);
    allowed.add(LR_SCHEDULE);
    for (String k : raw.keySet()) {
      if (!allowed.contains(k)) {
        throw step.invalid("model." + k, "unknown field (expected one of: " + String.join(", ", allowed) + ")");
      }
    }
    Map<String, Object> values = new LinkedHashMap<>(raw);
    values.remove(SHUFFLE);
    Object schedule = values.remove(LR_SCHEDULE);
    if (schedule != null && !schedule.toString().contains("${")) {
      try {
        WorkerLoop.Schedule.parse(schedule.toString());
      } catch (IllegalArgumentException e) {
        throw step.invalid("model." + LR_SCHEDULE, e.getMessage().replace("Invalid lr_schedule: ", ""));
      }
    }
    if (values.values().stream().anyMatch(v -> v != null && v.toString().contains("${"))) {
      return null; // checked when the step runs, once substituted
    }
    try {
      return ModelSpec.fromMap(values);
    } catch (StagecraftException e) {
      throw step.invalid("model", e.getMessage());
    }
  }

  /** The {@code model} map as written (values may be lists, e.g. {@code hidden}). */
  @SuppressWarnings("unchecked")
  static Map<String, Object> modelMap(StepConfig step) {
    Object m = step.fields().get("model");
    if (!(m instanceof Map<?, ?>)) {
      throw step.invalid("model", "is missing or not a map (expected a map with 'type' and training settings)");
    }
    return (Map<String, Object>) m;
  }

  static String modelOption(StepConfig step, String key, String defaultValue) {
    Object v = modelMap(step).get(key);
    return v == null ? defaultValue : v.toString();
  }

  static Task task(StepConfig step, String value) {
    if (!TASKS.contains(value.toLowerCase(Locale.ROOT))) {
      throw step.invalid("task", "unknown task '" + value + "' (expected one of: " + String.join(", ", TASKS) + ")");
    }
    return Task.valueOf(value.toUpperCase(Locale.ROOT));
  }
}
