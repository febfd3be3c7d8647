package dev.stagecraft.training.spark;

import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.training.checkpoint.CheckpointPolicy;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Task;
import dev.stagecraft.training.pipeline.Parallelism;
import dev.stagecraft.training.pipeline.PipeSchedule;
import dev.stagecraft.training.pipeline.StageSplit;
import java.util.ArrayList;
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
  static final String PARALLELISM = "parallelism";
  static final List<String> PARALLELISM_KEYS = List.of("pipeline", "micro_batches", "schedule", "stages");
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

  /**
   * The step's {@code parallelism} map checked against its {@code workers} and model: {@link Parallelism#DATA}
   * without one; null while a value is unsubstituted (checked when the step runs).
   *
   * @param spec the model, or null while it holds unsubstituted values (its checks then wait too)
   */
  static Parallelism parallelism(StepConfig step, ModelSpec spec) {
    Object raw = step.fields().get(PARALLELISM);
    if (raw == null) {
      return Parallelism.DATA;
    }
    if (!(raw instanceof Map<?, ?> map)) {
      throw step.invalid(PARALLELISM, "is not a map (expected e.g. { pipeline: 2, micro_batches: 8, schedule: 1f1b })");
    }
    for (Object k : map.keySet()) {
      if (!PARALLELISM_KEYS.contains(String.valueOf(k))) {
        throw step.invalid(PARALLELISM + "." + k, "unknown field (expected one of: "
            + String.join(", ", PARALLELISM_KEYS) + ")");
      }
    }
    String workersRaw = step.string("workers").orElse("1");
    if (spec == null || workersRaw.contains("${") || map.values().stream().anyMatch(v -> String.valueOf(v)
        .contains("${"))) {
      return null;
    }
    int pipeline = positive(step, map, "pipeline", 1);
    int microBatches = positive(step, map, "micro_batches", 1);
    PipeSchedule schedule;
    try {
      schedule = PipeSchedule.parse(String.valueOf(map.containsKey("schedule") ? map.get("schedule") : "1f1b"));
    } catch (IllegalArgumentException e) {
      throw step.invalid(PARALLELISM + ".schedule", e.getMessage());
    }
    List<List<Integer>> stages = stages(step, map.get("stages"));
    int workers = step.intValue("workers", 1);
    if (pipeline > 1 && spec.type() != ModelSpec.Type.MLP) {
      throw step.invalid(PARALLELISM + ".pipeline", pipeline + " stages, but model.type '" + spec.type().label()
          + "' is one layer, not a sequential stack of layers to split (expected pipeline: 1, or model.type: mlp)");
    }
    if (workers % pipeline != 0) {
      throw step.invalid(PARALLELISM + ".pipeline", pipeline + " does not divide workers: " + workers
          + " (expected workers = pipeline × data-parallel replicas, e.g. workers: " + pipeline * Math.max(1,
          workers / pipeline) + ")");
    }
    int layers = StageSplit.numLayers(spec);
    if (pipeline > layers) {
      throw step.invalid(PARALLELISM + ".pipeline", pipeline + " stages, but the model has only " + layers
          + " layers (" + spec.hidden().size() + " hidden + the output layer; expected at most " + layers + ")");
    }
    if (pipeline > 1 && microBatches < pipeline) {
      throw step.invalid(PARALLELISM + ".micro_batches", microBatches + " (expected at least pipeline: " + pipeline
          + "; with fewer micro-batches than stages some stages only wait)");
    }
    int perReplica = (spec.batchSize() + workers / pipeline - 1) / (workers / pipeline);
    if (microBatches > perReplica) {
      throw step.invalid(PARALLELISM + ".micro_batches", microBatches + " micro-batches, but each of the "
          + workers / pipeline + " replica(s) gets " + perReplica + " rows of model.batch_size " + spec.batchSize()
          + " per step (expected at most " + perReplica + ")");
    }
    if (stages != null) {
      if (stages.size() != pipeline) {
        throw step.invalid(PARALLELISM + ".stages", stages.size() + " stages listed (expected pipeline: " + pipeline
            + ")");
      }
      try {
        // Widths do not matter to the shape of the split: 1 feature and 1 output stand in for the real ones.
        StageSplit.given(StageSplit.layers(spec, 1, 1), stages);
      } catch (IllegalArgumentException e) {
        throw step.invalid(PARALLELISM + ".stages", e.getMessage());
      }
    }
    return new Parallelism(pipeline, microBatches, schedule, stages);
  }

  private static int positive(StepConfig step, Map<?, ?> map, String key, int defaultValue) {
    Object v = map.get(key);
    if (v == null) {
      return defaultValue;
    }
    if (!(v instanceof Integer i) || i < 1) {
      throw step.invalid(PARALLELISM + "." + key, "'" + v + "' (expected a whole number of at least 1)");
    }
    return i;
  }

  private static List<List<Integer>> stages(StepConfig step, Object raw) {
    if (raw == null) {
      return null;
    }
    String expected = " (expected a list of layer lists, e.g. [[0, 1], [2, 3]])";
    if (!(raw instanceof List<?> outer)) {
      throw step.invalid(PARALLELISM + ".stages", "'" + raw + "'" + expected);
    }
    List<List<Integer>> stages = new ArrayList<>();
    for (Object o : outer) {
      if (!(o instanceof List<?> inner) || inner.stream().anyMatch(i -> !(i instanceof Integer))) {
        throw step.invalid(PARALLELISM + ".stages", "item '" + o + "'" + expected);
      }
      stages.add(inner.stream().map(i -> (Integer) i).toList());
    }
    return stages;
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
