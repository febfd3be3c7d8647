package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** {@code checkpoint.write_timeout_seconds}: its default, and the checks that name the field. */
class TrainConfigCheckpointTest {
  private static StepConfig step(Map<String, Object> checkpoint, Object timeoutSeconds) {
    Map<String, Object> fields = new LinkedHashMap<>();
    fields.put("checkpoint", checkpoint);
    if (timeoutSeconds != null) {
      fields.put("timeout_seconds", timeoutSeconds);
    }
    return new StepConfig("flow.yaml", "fit", "train", List.of(), Optional.empty(), fields);
  }

  private static double writeTimeout(Map<String, Object> checkpoint, Object timeoutSeconds) {
    return TrainConfig.checkpointPolicy(step(checkpoint, timeoutSeconds)).orElseThrow().writeTimeoutSeconds();
  }

  @Test
  void defaultsToHalfTheCollectiveTimeout() {
    assertThat(writeTimeout(Map.of("every_steps", 10), null)).isEqualTo(60);
    assertThat(writeTimeout(Map.of("every_steps", 10), 30)).isEqualTo(15);
    assertThat(writeTimeout(Map.of("every_steps", 10, "write_timeout_seconds", 2.5), 30)).isEqualTo(2.5);
    // With skip, training never waits for a write mid-run: a longer timeout is allowed.
    assertThat(writeTimeout(Map.of("every_steps", 10, "when_busy", "skip", "write_timeout_seconds", 300), 30))
        .isEqualTo(300);
  }

  @Test
  void refusesATimeoutThatIsNotAPositiveNumberOrOutlastsTheWorkersPatience() {
    assertThatThrownBy(() -> writeTimeout(Map.of("every_steps", 10, "write_timeout_seconds", 0), null))
        .isInstanceOf(StagecraftException.class)
        .hasMessage("flow.yaml: step 'fit' field 'checkpoint.write_timeout_seconds': '0' (expected a number of "
            + "seconds above 0)");
    assertThatThrownBy(() -> writeTimeout(Map.of("every_steps", 10, "write_timeout_seconds", "soon"), null))
        .hasMessageContaining("'checkpoint.write_timeout_seconds': 'soon' (expected a number of seconds above 0)");
    assertThatThrownBy(() -> writeTimeout(Map.of("every_steps", 10, "write_timeout_seconds", 120), null))
        .hasMessageContaining("'checkpoint.write_timeout_seconds': '120' (expected less than the step's "
            + "timeout_seconds, 120: with when_busy: wait the other workers wait for rank 0");
  }
}
