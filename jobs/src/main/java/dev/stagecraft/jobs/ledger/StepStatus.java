package dev.stagecraft.jobs.ledger;

/** The state of one step in a run's ledger. */
public enum StepStatus {
  PENDING(false),
  RUNNING(false),
  SUCCEEDED(true),
  FAILED(true),
  /** Not run because a step it depends on failed. */
  SKIPPED(true);

  private final boolean isFinal;

  StepStatus(boolean isFinal) {
    this.isFinal = isFinal;
  }

  /** True if the step will not change state again in this attempt of the run. */
  public boolean isFinal() {
    return isFinal;
  }
}
