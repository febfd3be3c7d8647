package dev.stagecraft.jobs.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.ledger.StepRecord;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** What sizing learns from a run's record of a step. */
class StepSizingHistoryTest {
  private static StepRecord succeeded(double seconds, Map<String, Object> details) {
    return StepRecord.pending("train", List.of()).started("2026-11-28T10:00:00Z")
        .succeeded("2026-11-28T10:01:00Z", seconds, Map.of(), Map.of(), "f", details);
  }

  @Test
  void aStepRunAsItsOwnApplicationTookTheApplicationsWholeLife() {
    // 12 s inside the training application; 31.5 s from spark-submit to its exit, which the run waited for.
    StepRecord launched = succeeded(12.0, Map.of("application", Map.of("placement", "own application",
        "exit_code", 0, "seconds", 31.5)));
    assertThat(StepSizing.observedSeconds(launched)).isEqualTo(31.5);
  }

  @Test
  void aStepRunInTheWorkflowsApplicationTookItsOwnSeconds() {
    assertThat(StepSizing.observedSeconds(succeeded(12.0, Map.of()))).isEqualTo(12.0);
    // An application record without a duration (it failed to start) changes nothing.
    assertThat(StepSizing.observedSeconds(succeeded(12.0, Map.of("application", Map.of("placement",
        "own application"))))).isEqualTo(12.0);
  }
}
