package dev.stagecraft.spi;

/**
 * What kind of failure an error is, so the CLI can pick an exit code and the ledger can count failures by kind.
 */
public enum ErrorCategory {
  /** Bad input from the user: a workflow file, a flag, a data file. Fix the input and run again. */
  USER(2),
  /** The cluster lacks what was asked for: slots, GPUs, memory. */
  RESOURCE(3),
  /** A service outside Stagecraft failed or could not be reached: HDFS, S3, Airflow. */
  EXTERNAL(4),
  /** A bug in Stagecraft or an unexpected failure. */
  INTERNAL(1);

  private final int exitCode;

  ErrorCategory(int exitCode) {
    this.exitCode = exitCode;
  }

  /** The process exit code the CLI uses for this category (never 0). */
  public int exitCode() {
    return exitCode;
  }
}
