package dev.stagecraft.training.pipeline;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.training.model.ModelSpec;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class StageSplitTest {
  private static ModelSpec mlp(List<Integer> hidden) {
    return ModelSpec.fromMap(Map.of("type", "mlp", "hidden", hidden));
  }

  @Test
  void eightEqualLayersSplitInHalvesAndTheSmallOutputLayerJoinsTheSecond() {
    List<StageSplit.Layer> layers = StageSplit.layers(mlp(List.of(1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024)),
        1024, 1);
    assertThat(layers).hasSize(9);
    StageSplit split = StageSplit.balanced(layers, 2);
    assertThat(split.stage(0).layers()).containsExactly(0, 1, 2, 3);
    assertThat(split.stage(1).layers()).containsExactly(4, 5, 6, 7, 8);
    long whole = layers.stream().mapToLong(StageSplit.Layer::parameters).sum();
    assertThat((double) split.stage(0).parameters() / whole).isBetween(0.49, 0.51);
    assertThat(split.describe().get(1)).containsEntry("layers", List.of(4, 5, 6, 7, 8))
        .containsEntry("parameters", split.stage(1).parameters());
  }

  @Test
  void unequalLayersAreBalancedByTheirCostNotTheirCount() {
    // 512 → 512 → 512 → 16 → 1: the first two maps dominate; each stage takes one of them (two layers each would
    // put both in the first stage).
    List<StageSplit.Layer> layers = StageSplit.layers(mlp(List.of(512, 512, 16)), 512, 1);
    StageSplit split = StageSplit.balanced(layers, 2);
    assertThat(split.stage(0).layers()).containsExactly(0);
    assertThat(split.stage(1).layers()).containsExactly(1, 2, 3);
    StageSplit three = StageSplit.balanced(layers, 4);
    assertThat(three.stages()).extracting(StageSplit.Stage::first).containsExactly(0, 1, 2, 3);
  }

  @Test
  void aGivenSplitMustCoverEveryLayerOnceInOrder() {
    List<StageSplit.Layer> layers = StageSplit.layers(mlp(List.of(8, 8, 8)), 4, 1);
    assertThat(StageSplit.given(layers, List.of(List.of(0), List.of(1, 2, 3))).stage(1).first()).isEqualTo(1);
    assertThatThrownBy(() -> StageSplit.given(layers, List.of(List.of(0, 2), List.of(1, 3))))
        .hasMessageContaining("stage 0 holds layers [0, 2] (expected consecutive layers in order, starting with "
            + "layer 1");
    assertThatThrownBy(() -> StageSplit.given(layers, List.of(List.of(0, 1), List.of(2))))
        .hasMessage("the stages hold layers 0..2 but the model has 4 (expected every layer in one stage)");
    assertThatThrownBy(() -> StageSplit.given(layers, List.of(List.of(0, 1), List.of())))
        .hasMessageContaining("stage 1 has no layers");
    assertThatThrownBy(() -> StageSplit.given(layers, List.of(List.of(0, 1, 2, 3, 4))))
        .hasMessageContaining("stage 0 holds layer 4 but the model has 4 layers");
    assertThatThrownBy(() -> StageSplit.balanced(layers, 5)).hasMessageContaining("5 stages for 4 layers");
  }
}
