package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import java.util.Optional;

/**
 * One task instance of a DAG run. {@code state} is Airflow's name ({@code success}, {@code failed},
 * {@code running}, {@code up_for_retry}, …); empty while the task has not been scheduled.
 */
public record TaskInstance(String taskId, Optional<String> state, int tryNumber) {
  public TaskInstance {
    requireNonNull(taskId, "taskId is null");
    requireNonNull(state, "state is null");
  }

  /** The state, or {@code none} while unscheduled. */
  public String stateName() {
    return state.orElse("none");
  }
}
