package dev.stagecraft.jobs.airflow;

import java.util.Locale;

/** The states of an Airflow DAG run; {@link #isFinal()} tells whether it can still change. */
public enum DagRunState {
  QUEUED(false),
  RUNNING(false),
  SUCCESS(true),
  FAILED(true);

  private final boolean isFinal;

  DagRunState(boolean isFinal) {
    this.isFinal = isFinal;
  }

  public boolean isFinal() {
    return isFinal;
  }

  /** Airflow's lower-case name. */
  public String apiName() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Parses Airflow's name of a state. */
  public static DagRunState of(String s) {
    try {
      return valueOf(s.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException | NullPointerException e) {
      throw new AirflowException(AirflowException.Reason.SERVER_ERROR, 0,
          "Cannot read Airflow's answer: unknown DAG run state '" + s + "' (expected queued, running, success or "
              + "failed)");
    }
  }
}
