package dev.stagecraft.policies.sizing;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Instant;
import org.junit.jupiter.api.Test;

class DeadlineTest {
  private static final Instant AT_0500 = Instant.parse("2026-11-28T05:00:00Z");

  @Test
  void durations() {
    assertThat(Deadline.parse("90s").orElseThrow().secondsFrom(AT_0500)).isEqualTo(90.0);
    assertThat(Deadline.parse("45m").orElseThrow().secondsFrom(AT_0500)).isEqualTo(2700.0);
    assertThat(Deadline.parse("1h30m").orElseThrow().secondsFrom(AT_0500)).isEqualTo(5400.0);
    assertThat(Deadline.parse("2 h").orElseThrow().secondsFrom(AT_0500)).isEqualTo(7200.0);
    assertThat(Deadline.parse("1d").orElseThrow().dueFrom(AT_0500)).isEqualTo(Instant.parse("2026-11-29T05:00:00Z"));
  }

  @Test
  void timesOfDayAreTheNextOneAfterTheStart() {
    assertThat(Deadline.parse("06:00").orElseThrow().secondsFrom(AT_0500)).isEqualTo(3600.0);
    // already past today: tomorrow
    assertThat(Deadline.parse("04:00").orElseThrow().secondsFrom(AT_0500)).isEqualTo(23 * 3600.0);
    assertThat(Deadline.parse("05:00").orElseThrow().secondsFrom(AT_0500)).isEqualTo(24 * 3600.0);
    assertThat(Deadline.parse("06:00+01:00").orElseThrow().secondsFrom(AT_0500)).isEqualTo(24 * 3600.0);
    assertThat(Deadline.parse("05:30:30Z").orElseThrow().secondsFrom(AT_0500)).isEqualTo(1830.0);
  }

  @Test
  void refusesWhatIsNeither() {
    for (String bad : new String[] {"soon", "25:00", "12:61", "0s", "-5m", "5", "h"}) {
      assertThat(Deadline.parse(bad)).as(bad).isEmpty();
    }
  }
}
