package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import java.time.Duration;

/**
 * How Airflow runs one exported step: retries, the delay between them, and the task's execution timeout.
 *
 * <p>{@link #forStep} is the one place these are decided. Today they come from the export's defaults and the step's
 * own {@code timeout_seconds} (train steps); when resource policies carry retry and timeout settings, they plug in
 * there, and the exported DAG follows without other changes.
 */
public record TaskSettings(int retries, Duration retryDelay, Duration executionTimeout) {
  /** Default retries of an exported task: one, since a step re-run resumes cleanly (outputs commit atomically). */
  public static final int RETRIES_DEFAULT = 1;
  /** Default delay before a retry. */
  public static final Duration RETRY_DELAY_DEFAULT = Duration.ofMinutes(2);
  /** Default execution timeout of a task. */
  public static final Duration EXECUTION_TIMEOUT_DEFAULT = Duration.ofHours(2);
  /**
   * Added to a step's own {@code timeout_seconds} for the Airflow task: spark-submit starts a JVM and a Spark
   * application before the step's clock starts, and commits outputs after it stops.
   */
  public static final Duration STARTUP_MARGIN = Duration.ofMinutes(10);

  public static final TaskSettings DEFAULTS =
      new TaskSettings(RETRIES_DEFAULT, RETRY_DELAY_DEFAULT, EXECUTION_TIMEOUT_DEFAULT);

  public TaskSettings {
    if (retries < 0) {
      throw StagecraftException.user("Invalid retries: %d (expected 0 or more)", retries);
    }
    requireNonNull(retryDelay, "retryDelay is null");
    requireNonNull(executionTimeout, "executionTimeout is null");
    if (retryDelay.isNegative()) {
      throw StagecraftException.user("Invalid retry delay: %s (expected 0 or more)", retryDelay);
    }
    if (executionTimeout.isNegative() || executionTimeout.isZero()) {
      throw StagecraftException.user("Invalid execution timeout: %s (expected more than 0)", executionTimeout);
    }
  }

  /**
   * The settings of {@code step}'s task: {@code defaults}, with the execution timeout raised to the step's own
   * {@code timeout_seconds} plus {@link #STARTUP_MARGIN} when it declares one.
   */
  public static TaskSettings forStep(StepConfig step, TaskSettings defaults) {
    // Resource policies (step.policy()) will override retries and timeouts here.
    Duration timeout = defaults.executionTimeout();
    if (step.has("timeout_seconds")) {
      int seconds = step.intValue("timeout_seconds", 0);
      if (seconds > 0) {
        timeout = Duration.ofSeconds(seconds).plus(STARTUP_MARGIN);
      }
    }
    return new TaskSettings(defaults.retries(), defaults.retryDelay(), timeout);
  }
}
