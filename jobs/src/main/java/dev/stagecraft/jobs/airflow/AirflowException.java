package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.util.OptionalInt;

/**
 * A failure talking to Airflow, typed by {@link Reason}. Messages never contain credentials or tokens.
 */
public final class AirflowException extends StagecraftException {
  private static final long serialVersionUID = 1L;

  /** What went wrong; each reason has the error category (and so the CLI's exit code) it maps to. */
  public enum Reason {
    /** No answer: connection refused, DNS, TLS or a request timeout. */
    UNREACHABLE(ErrorCategory.EXTERNAL),
    /** 401: wrong username or password (or a token Airflow no longer accepts). */
    UNAUTHORIZED(ErrorCategory.USER),
    /** 403: the user's role may not do this. */
    FORBIDDEN(ErrorCategory.USER),
    /** 404: no such DAG, run or asset (a DAG also while Airflow has not parsed its file yet). */
    NOT_FOUND(ErrorCategory.USER),
    /** 409: e.g. a DAG run with that id exists already. */
    CONFLICT(ErrorCategory.USER),
    /** 422 (or 400): Airflow rejected the request's content. */
    INVALID(ErrorCategory.USER),
    /** 5xx, or an answer this client cannot read. */
    SERVER_ERROR(ErrorCategory.EXTERNAL),
    /** A wait for a DAG run's end ran out of time. */
    TIMEOUT(ErrorCategory.EXTERNAL),
    /** A DAG run Stagecraft waited for ended in a state other than success. */
    RUN_FAILED(ErrorCategory.INTERNAL);

    private final ErrorCategory category;

    Reason(ErrorCategory category) {
      this.category = category;
    }

    public ErrorCategory category() {
      return category;
    }
  }

  private final Reason reason;
  private final int status;

  public AirflowException(Reason reason, int status, String message) {
    super(requireNonNull(reason, "reason is null").category(), message);
    this.reason = reason;
    this.status = status;
  }

  public AirflowException(Reason reason, String message, Throwable cause) {
    super(requireNonNull(reason, "reason is null").category(), message, cause);
    this.reason = reason;
    this.status = 0;
  }

  public Reason reason() {
    return reason;
  }

  /** The HTTP status Airflow answered with, if it answered. */
  public OptionalInt status() {
    return status > 0 ? OptionalInt.of(status) : OptionalInt.empty();
  }

  /** The reason an HTTP status stands for (only for statuses >= 400). */
  public static Reason reasonOf(int status) {
    return switch (status) {
      case 401 -> Reason.UNAUTHORIZED;
      case 403 -> Reason.FORBIDDEN;
      case 404 -> Reason.NOT_FOUND;
      case 409 -> Reason.CONFLICT;
      case 400, 422 -> Reason.INVALID;
      default -> Reason.SERVER_ERROR;
    };
  }
}
