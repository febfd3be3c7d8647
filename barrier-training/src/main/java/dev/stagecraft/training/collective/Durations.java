package dev.stagecraft.training.collective;

import java.time.Duration;

final class Durations {
  private Durations() {}

  /** "30s", "500ms", "1.5s": short enough for an error message. */
  static String format(Duration d) {
    long millis = d.toMillis();
    if (millis < 1_000) {
      return millis + "ms";
    }
    if (millis % 1_000 == 0) {
      return millis / 1_000 + "s";
    }
    return String.format(java.util.Locale.ROOT, "%.1fs", millis / 1_000.0);
  }
}
