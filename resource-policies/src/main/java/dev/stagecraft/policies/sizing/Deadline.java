package dev.stagecraft.policies.sizing;

import static java.util.Objects.requireNonNull;

import java.time.Duration;
import java.time.Instant;
import java.time.LocalTime;
import java.time.OffsetDateTime;
import java.time.OffsetTime;
import java.time.ZoneOffset;
import java.util.Locale;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A deadline as a workflow writes it: a duration from the start of the run or step ({@code 90s}, {@code 45m},
 * {@code 2h}, {@code 1h30m}) or a time of day ({@code 06:00}, UTC unless an offset is given: {@code 06:00+01:00}),
 * the next such time after the start.
 */
public record Deadline(String text, Optional<Duration> within, Optional<OffsetTime> at) {
  private static final Pattern PARTS = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*(ms|s|min|m|h|d)");
  private static final Pattern DURATION = Pattern.compile("(?:\\s*\\d+(?:\\.\\d+)?\\s*(?:ms|s|min|m|h|d))+\\s*");
  private static final Pattern TIME = Pattern.compile("(\\d{1,2}):(\\d{2})(?::(\\d{2}))?(Z|[+-]\\d{2}:\\d{2})?");

  /** What {@link #parse} accepts, for messages. */
  public static final String EXPECTED =
      "a duration such as 90s, 45m, 2h or 1h30m, or a time of day such as 06:00 (UTC) or 06:00+01:00";

  public Deadline {
    requireNonNull(text, "text is null");
    requireNonNull(within, "within is null");
    requireNonNull(at, "at is null");
    if (within.isPresent() == at.isPresent()) {
      throw new IllegalArgumentException("a deadline is a duration or a time of day");
    }
  }

  /** Parses {@code text}; empty if it is neither form (the caller names the field in its message). */
  public static Optional<Deadline> parse(String text) {
    String t = text.trim().toLowerCase(Locale.ROOT);
    if (DURATION.matcher(t).matches()) {
      double seconds = 0;
      Matcher m = PARTS.matcher(t);
      while (m.find()) {
        double v = Double.parseDouble(m.group(1));
        seconds += switch (m.group(2)) {
          case "ms" -> v / 1000;
          case "m", "min" -> v * 60;
          case "h" -> v * 3600;
          case "d" -> v * 86400;
          default -> v;
        };
      }
      if (seconds <= 0) {
        return Optional.empty();
      }
      return Optional.of(new Deadline(text.trim(), Optional.of(Duration.ofMillis(Math.round(seconds * 1000))),
          Optional.empty()));
    }
    Matcher m = TIME.matcher(text.trim().toUpperCase(Locale.ROOT));
    if (m.matches()) {
      try {
        LocalTime time = LocalTime.of(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
            m.group(3) == null ? 0 : Integer.parseInt(m.group(3)));
        ZoneOffset zone = m.group(4) == null || m.group(4).equals("Z") ? ZoneOffset.UTC : ZoneOffset.of(m.group(4));
        return Optional.of(new Deadline(text.trim(), Optional.empty(), Optional.of(time.atOffset(zone))));
      } catch (java.time.DateTimeException e) {
        return Optional.empty();
      }
    }
    return Optional.empty();
  }

  /** Seconds from {@code start} to the deadline: the duration, or to the next time of day after {@code start}. */
  public double secondsFrom(Instant start) {
    if (within.isPresent()) {
      return within.get().toMillis() / 1000.0;
    }
    OffsetTime t = at.get();
    OffsetDateTime s = start.atOffset(t.getOffset());
    OffsetDateTime due = s.toLocalDate().atTime(t.toLocalTime()).atOffset(t.getOffset());
    if (!due.isAfter(s)) {
      due = due.plusDays(1);
    }
    return Duration.between(s, due).toMillis() / 1000.0;
  }

  /** The instant it falls on for something that started at {@code start}. */
  public Instant dueFrom(Instant start) {
    return start.plusMillis(Math.round(secondsFrom(start) * 1000));
  }
}
