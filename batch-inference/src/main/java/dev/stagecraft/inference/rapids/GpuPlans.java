package dev.stagecraft.inference.rapids;

import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;

/**
 * What the RAPIDS Accelerator would run on the GPU, asked on a machine without one: with the plugin in
 * {@code explainOnly} mode ({@link #SETTINGS}) Spark runs everything on the CPU, and RAPIDS'
 * {@code ExplainPlan.explainPotentialGpuPlan} says for each operator and expression whether it could run on the GPU
 * ({@code *Exec <FilterExec> will run on GPU}) or why not ({@code !Exec <ProjectExec> cannot run on GPU because …}).
 *
 * <p>Steps call {@link #record} with the DataFrame whose plan matters (a {@code sql} step's query, an {@code infer}
 * step's preprocessing); nothing happens unless {@link #enable} was called (by {@code stagecraft explain-gpu}).
 * The RAPIDS jar is not a build dependency: it is found by reflection on the classpath.
 */
public final class GpuPlans {
  /**
   * Spark settings for explain-only mode on a CPU-only machine: the plugin in {@code explainOnly} mode, and
   * {@code spark.rapids.skipGpuArchitectureCheck}, without which the executor plugin calls CUDA and kills the JVM.
   */
  public static final Map<String, String> SETTINGS = Map.of(
      "spark.plugins", "com.nvidia.spark.SQLPlugin",
      "spark.rapids.sql.mode", "explainOnly",
      // Without it the executor plugin asks CUDA for the GPU's architecture and the JVM dies.
      "spark.rapids.skipGpuArchitectureCheck", "true");
  static final String EXPLAIN_CLASS = "com.nvidia.spark.rapids.ExplainPlan";
  public static final String PLUGIN_CLASS = "com.nvidia.spark.SQLPlugin";

  private static volatile boolean enabled;
  private static final Map<String, String> REPORTS = Collections.synchronizedMap(new LinkedHashMap<>());

  private GpuPlans() {}

  /** Whether the RAPIDS Accelerator is on the classpath. */
  public static boolean available() {
    try {
      Class.forName(PLUGIN_CLASS, false, Thread.currentThread().getContextClassLoader());
      return true;
    } catch (ClassNotFoundException e) {
      return false;
    }
  }

  public static void enable() {
    enabled = true;
  }

  /** Records RAPIDS' report for {@code data}'s plan under {@code stepId} if enabled; a no-op otherwise. */
  public static void record(String stepId, Dataset<Row> data) {
    if (enabled) {
      REPORTS.put(stepId, explain(data));
    }
  }

  /** The reports recorded so far, by step id, in the order the steps recorded them. */
  public static Map<String, String> reports() {
    synchronized (REPORTS) {
      return new LinkedHashMap<>(REPORTS);
    }
  }

  /** RAPIDS' report on {@code data}'s plan (every operator and expression, on the GPU or not and why). */
  public static String explain(Dataset<Row> data) {
    try {
      Class<?> c = Class.forName(EXPLAIN_CLASS, true, Thread.currentThread().getContextClassLoader());
      Method m = c.getMethod("explainPotentialGpuPlan", Dataset.class, String.class);
      return String.valueOf(m.invoke(null, data, "ALL"));
    } catch (ClassNotFoundException e) {
      throw new StagecraftException(ErrorCategory.USER, "Cannot explain GPU plans: the RAPIDS Accelerator jar is "
          + "not on the classpath (bin/stagecraft explain-gpu fetches it into ~/.cache/stagecraft/rapids)");
    } catch (ReflectiveOperationException e) {
      Throwable cause = e.getCause() != null ? e.getCause() : e;
      throw new StagecraftException(ErrorCategory.INTERNAL, "Cannot explain the GPU plan: " + cause, cause);
    }
  }

  /** The lines of a report about what cannot run on the GPU (they start with {@code !}). */
  public static List<String> notOnGpu(String report) {
    List<String> out = new ArrayList<>();
    for (String line : report.split("\n")) {
      if (line.strip().startsWith("!")) {
        out.add(line.strip());
      }
    }
    return out;
  }
}
