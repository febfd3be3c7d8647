package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.spi.SizingTraits;
import dev.stagecraft.spi.SizingTraits.Recovery;
import dev.stagecraft.testing.TestStepContext;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** What a {@code train} step tells right-sizing: its gang, and what a preemption costs it. */
class TrainStepSizingTest {

  static SizingTraits sizing(Map<String, Object> fields, Map<String, Double> lastMetrics) {
    return new TrainStep().sizing(TestStepContext.step("fit", "train", fields), lastMetrics);
  }

  @Test
  void withoutCheckpointsAPreemptionLosesEverythingAndTheWorkersAreAGang() {
    assertThat(sizing(Map.of("workers", 4), Map.of()))
        .isEqualTo(new SizingTraits(Recovery.STARTS_OVER, Optional.empty(), 4, false));
    assertThat(sizing(Map.of(), Map.of()).gangTasks()).as("one worker by default").isEqualTo(1);
    assertThat(sizing(Map.of("workers", "many"), Map.of()).gangTasks()).as("a bad value is the step's to report")
        .isEqualTo(1);
  }

  @Test
  void theCheckpointIntervalIsEverySecondsElseWhatTheLatestRunMeasured() {
    SizingTraits timed = sizing(Map.of("workers", 2, "checkpoint", Map.of("every_seconds", 60)), Map.of());
    assertThat(timed).isEqualTo(new SizingTraits(Recovery.RESUMES_FROM_CHECKPOINT, Optional.of(60.0), 2, false));
    assertThat(timed.checkpoints()).isTrue();

    Map<String, Object> bySteps = Map.of("workers", 2, "checkpoint", Map.of("every_steps", 100));
    SizingTraits measured = sizing(bySteps, Map.of("loop_seconds", 100.0, "checkpoints_written", 4.0));
    assertThat(measured.checkpointSeconds()).contains(25.0);

    SizingTraits unknown = sizing(bySteps, Map.of());
    assertThat(unknown.recovery()).isEqualTo(Recovery.RESUMES_FROM_CHECKPOINT);
    assertThat(unknown.checkpoints()).as("no interval known yet: sized as a step that starts over").isFalse();
  }
}
