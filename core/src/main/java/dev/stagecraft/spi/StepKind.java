package dev.stagecraft.spi;

import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A kind of workflow step ({@code load}, {@code sql}, {@code train}, {@code infer}, …).
 *
 * <p>Kinds are found with {@link java.util.ServiceLoader}: a module lists its implementations in
 * {@code META-INF/services/dev.stagecraft.spi.StepKind}. An implementation must have a public no-argument
 * constructor, hold no per-run state, and be safe to call from several threads (independent steps run concurrently).
 *
 * <p>The engine validates every step of a workflow before it runs any: the common fields, then the fields declared
 * by {@link #fields()} (presence, unknown names, types), then {@link #validate}. Only then does it call {@link #run},
 * once per attempt, with parameters and references to earlier steps' outputs substituted.
 */
public interface StepKind {

  /** The name used in {@code kind:}. */
  String name();

  /** The kind-specific fields, beyond the common {@code id}, {@code kind}, {@code after}, {@code policy}. */
  List<FieldSpec> fields();

  /**
   * The names of the outputs a step of this kind commits, the table output (if any) first; referenced from other
   * steps as {@code ${steps.ID.NAME}}.
   */
  List<String> outputs();

  /**
   * Checks beyond field presence and types, before anything runs. Throw a {@link StagecraftException} made with
   * {@link StepConfig#invalid} to reject the step. References to earlier steps' outputs ({@code ${steps.…}}) are
   * still unsubstituted here.
   */
  default void validate(StepConfig step) {}

  /**
   * True if the kind runs its work in barrier stages (gang-scheduled, all tasks at once). Spark refuses barrier stages
   * under dynamic allocation (SPARK-24942), so the workflow loader rejects such a step under a {@code dynamic} policy.
   */
  default boolean barrier() {
    return false;
  }

  /**
   * What right-sizing needs to know about {@code step} (with parameters and references substituted): how it recovers
   * from a lost executor, its gang of tasks, whether its tasks may share a GPU. {@code lastMetrics} are the metrics of
   * the step's latest successful run (empty if there is none), for what is measured rather than configured, such as a
   * checkpoint interval given in steps. Called by the engine before the step runs, never on an executor. Default:
   * {@link SizingTraits#UNKNOWN}, a step that starts over and is never put on spot capacity.
   */
  default SizingTraits sizing(StepConfig step, Map<String, Double> lastMetrics) {
    return SizingTraits.UNKNOWN;
  }

  /**
   * Steps this step reads without naming them in {@code after} or in a {@code ${steps.…}} reference, e.g. the tables
   * a SQL query names. Only ids in {@code stepIds} matter; the engine makes them dependencies.
   */
  default Set<String> implicitInputs(StepConfig step, Set<String> stepIds) {
    return Set.of();
  }

  /**
   * The part of a step's work that needs none of its policy's resources, for a step the engine runs as its own Spark
   * application (a static policy in a workflow that otherwise allocates dynamically, see the README's placement):
   * called in the workflow's own application just before the launch, so the step's executors — GPUs, typically —
   * start only when the work that needs them can. What it returns (JSON values: numbers, strings, lists, maps) reaches
   * the launched attempt as {@link StepContext#prepared()}. {@link #run} must work without it too, as it does in
   * every other placement. A failure here fails the attempt before anything is launched. Default: nothing.
   */
  default Map<String, Object> prepare(StepContext context) throws Exception {
    return Map.of();
  }

  /**
   * Runs one attempt of the step. Outputs are written through {@link StepContext} and committed by the engine only
   * if this method returns normally; on an exception nothing the attempt wrote becomes visible.
   *
   * @throws StagecraftException for failures with a known category; any other exception counts as internal
   */
  void run(StepContext context) throws Exception;
}
