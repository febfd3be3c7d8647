package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.training.pipeline.Parallelism;
import dev.stagecraft.training.pipeline.PipeSchedule;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** {@code parallelism}: its defaults, and every check naming the step and the field. */
class TrainConfigParallelismTest {
  private static final Map<String, Object> MLP = Map.of("type", "mlp", "hidden", List.of(32, 32, 16),
      "batch_size", 64);

  private static StepConfig step(Object parallelism, int workers, Map<String, Object> model) {
    Map<String, Object> fields = new LinkedHashMap<>();
    fields.put("input", "data");
    fields.put("label", "y");
    fields.put("model", model);
    fields.put("workers", workers);
    if (parallelism != null) {
      fields.put("parallelism", parallelism);
    }
    return new StepConfig("flow.yaml", "fit", "train", List.of(), Optional.empty(), fields);
  }

  private static Parallelism parse(Object parallelism, int workers) {
    StepConfig s = step(parallelism, workers, MLP);
    return TrainConfig.parallelism(s, TrainConfig.modelSpec(s));
  }

  private static void assertInvalid(Object parallelism, int workers, Map<String, Object> model, String field,
      String problem) {
    StepConfig s = step(parallelism, workers, model);
    assertThatThrownBy(() -> new TrainStep().validate(s)).isInstanceOf(StagecraftException.class)
        .hasMessage("flow.yaml: step 'fit' field '" + field + "': " + problem);
  }

  @Test
  void withoutAMapTrainingIsDataParallelAndTheDefaultsAreOneStageOneMicroBatchAndOneFOneB() {
    assertThat(parse(null, 4)).isEqualTo(Parallelism.DATA);
    Parallelism p = parse(Map.of("pipeline", 2, "micro_batches", 8), 4);
    assertThat(p.pipeline()).isEqualTo(2);
    assertThat(p.replicas(4)).isEqualTo(2);
    assertThat(p.schedule()).isEqualTo(PipeSchedule.ONE_F_ONE_B);
    assertThat(parse(Map.of("pipeline", 2, "micro_batches", 2, "schedule", "gpipe", "stages",
        List.of(List.of(0), List.of(1, 2, 3))), 2).stages()).containsExactly(List.of(0), List.of(1, 2, 3));
    assertThat(parse(Map.of("pipeline", "${P}"), 2)).as("checked once substituted").isNull();
  }

  @Test
  void eachBadValueIsNamedWithWhatWasExpected() {
    assertInvalid(Map.of("pipeline", 3, "micro_batches", 4), 4, MLP, "parallelism.pipeline",
        "3 does not divide workers: 4 (expected workers = pipeline × data-parallel replicas, e.g. workers: 3)");
    assertInvalid(Map.of("pipeline", 5, "micro_batches", 8), 5, MLP, "parallelism.pipeline",
        "5 stages, but the model has only 4 layers (3 hidden + the output layer; expected at most 4)");
    assertInvalid(Map.of("pipeline", 2, "micro_batches", 1), 2, MLP, "parallelism.micro_batches",
        "1 (expected at least pipeline: 2; with fewer micro-batches than stages some stages only wait)");
    assertInvalid(Map.of("pipeline", 2, "micro_batches", 48), 4, MLP, "parallelism.micro_batches",
        "48 micro-batches, but each of the 2 replica(s) gets 32 rows of model.batch_size 64 per step (expected at "
            + "most 32)");
    assertInvalid(Map.of("pipeline", 2, "micro_batches", 4), 2, Map.of("type", "logistic"), "parallelism.pipeline",
        "2 stages, but model.type 'logistic' is one layer, not a sequential stack of layers to split (expected "
            + "pipeline: 1, or model.type: mlp)");
    assertInvalid(Map.of("pipeline", 2, "schedule", "zigzag", "micro_batches", 2), 2, MLP,
        "parallelism.schedule", "'zigzag' (expected one of: gpipe, 1f1b)");
    assertInvalid(Map.of("pipeline", 0), 2, MLP, "parallelism.pipeline", "'0' (expected a whole number of at least 1)");
    assertInvalid(Map.of("stagez", 2), 2, MLP, "parallelism.stagez",
        "unknown field (expected one of: pipeline, micro_batches, schedule, stages)");
    assertInvalid(List.of(2), 2, MLP, "parallelism",
        "is not a map (expected e.g. { pipeline: 2, micro_batches: 8, schedule: 1f1b })");
    assertInvalid(Map.of("pipeline", 2, "micro_batches", 2, "stages", List.of(List.of(0, 1), List.of(3))), 2, MLP,
        "parallelism.stages", "stage 1 holds layers [3] (expected consecutive layers in order, starting with layer "
            + "2, covering 0..3 once)");
    assertInvalid(Map.of("pipeline", 2, "micro_batches", 2, "stages", List.of(List.of(0, 1, 2, 3))), 2, MLP,
        "parallelism.stages", "1 stages listed (expected pipeline: 2)");
    assertInvalid(Map.of("pipeline", 2, "micro_batches", 2, "stages", "first-half"), 2, MLP, "parallelism.stages",
        "'first-half' (expected a list of layer lists, e.g. [[0, 1], [2, 3]])");
  }
}
