package dev.stagecraft.jobs.ledger;

/** The state of a run as a whole. */
public enum RunStatus {
  RUNNING(false),
  /** Some steps have not run yet and nothing is running (a run driven step by step, e.g. from Airflow). */
  INCOMPLETE(false),
  SUCCEEDED(true),
  FAILED(true);

  private final boolean isFinal;

  RunStatus(boolean isFinal) {
    this.isFinal = isFinal;
  }

  public boolean isFinal() {
    return isFinal;
  }
}
