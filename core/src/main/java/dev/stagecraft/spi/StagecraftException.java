package dev.stagecraft.spi;

import static java.util.Objects.requireNonNull;

/** An error Stagecraft reports to its user: a one-line message that says what was wrong and what was expected. */
public class StagecraftException extends RuntimeException {
  /** Spark 4's SQLSTATE suffix on an error message's first line (see {@link #firstLine}). */
  private static final java.util.regex.Pattern SQLSTATE = java.util.regex.Pattern.compile("\\s+SQLSTATE: [0-9A-Z]{5}\\.?$");

  private static final long serialVersionUID = 1L;

  private final ErrorCategory category;

  public StagecraftException(ErrorCategory category, String message) {
    super(requireNonNull(message, "message is null"));
    this.category = requireNonNull(category, "category is null");
  }

  public StagecraftException(ErrorCategory category, String message, Throwable cause) {
    super(requireNonNull(message, "message is null"), cause);
    this.category = requireNonNull(category, "category is null");
  }

  public static StagecraftException user(String format, Object... args) {
    return new StagecraftException(ErrorCategory.USER, String.format(format, args));
  }

  public static StagecraftException external(Throwable cause, String format, Object... args) {
    return new StagecraftException(ErrorCategory.EXTERNAL, String.format(format, args), cause);
  }

  public ErrorCategory category() {
    return category;
  }

  /** The category of any throwable: a StagecraftException's own, else {@link ErrorCategory#INTERNAL}. */
  public static ErrorCategory categoryOf(Throwable t) {
    return find(t).map(StagecraftException::category).orElse(ErrorCategory.INTERNAL);
  }

  /** The first StagecraftException in {@code t}'s cause chain (Spark wraps what tasks and steps throw). */
  public static java.util.Optional<StagecraftException> find(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c instanceof StagecraftException se) {
        return java.util.Optional.of(se);
      }
    }
    return java.util.Optional.empty();
  }

  /**
   * The first non-empty line of a (Spark, parser) message: the rest is usually a plan or a stack. Spark 4 ends its
   * error messages with the SQL standard's state code ("… SQLSTATE: 42K03"), meant for JDBC clients; our one-line
   * errors name the step and field instead, so it is left out, and both Spark lines give the same line.
   */
  public static String firstLine(String message) {
    if (message == null) {
      return "";
    }
    String t = message.strip();
    int nl = t.indexOf('\n');
    String line = nl < 0 ? t : t.substring(0, nl);
    return SQLSTATE.matcher(line).replaceFirst("");
  }
}
