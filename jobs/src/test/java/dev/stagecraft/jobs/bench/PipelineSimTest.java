package dev.stagecraft.jobs.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import dev.stagecraft.training.pipeline.PipeSchedule;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The paper pipeline the {@code pipeline} bench compares its measured bubble with. */
class PipelineSimTest {
  static List<PipelineSim.StageTimes> same(int stages, PipelineSim.StageTimes t) {
    return java.util.Collections.nCopies(stages, t);
  }

  @ParameterizedTest
  @EnumSource(PipeSchedule.class)
  void equalStagesOnCoresOfTheirOwnLeaveTheTheoreticalBubble(PipeSchedule schedule) {
    for (int stages : new int[] {2, 3, 4}) {
      for (int m : new int[] {1, 2, 4, 8, 16}) {
        // Over many steps the first step's fill (the last stage has nothing to wait for before its first forward
        // than the fill itself, and no step after the last) weighs little.
        PipelineSim.Result r = PipelineSim.run(schedule, m, 400, same(stages, PipelineSim.StageTimes.compute(1, 2)));
        double theory = PipeSchedule.theoreticalBubble(stages, m);
        for (int s = 0; s < stages; s++) {
          assertThat(r.bubble(s)).as("%s, P=%d, M=%d, stage %d", schedule, stages, m, s)
              .isCloseTo(theory, offset(0.005));
        }
        assertThat(r.seconds()).as("%s, P=%d, M=%d: the run's length", schedule, stages, m)
            .isCloseTo(400 * (m + stages - 1) * 3.0, offset(3.0 * (stages + 1)));
      }
    }
  }

  @Test
  void aFasterFirstStageWaitsForTheSlowerOneBeyondTheTheory() {
    // The first stage skips its input's gradient: its backward is 7/8 of the second's.
    PipelineSim.Result r = PipelineSim.run(PipeSchedule.GPIPE, 8, 200,
        List.of(PipelineSim.StageTimes.compute(4, 7), PipelineSim.StageTimes.compute(4, 8)));
    double theory = PipeSchedule.theoreticalBubble(2, 8);
    assertThat(r.bubble(0)).isGreaterThan(theory + 0.05);
    assertThat(r.bubble(1)).isLessThan(theory);
    // Steady state, worked out by hand: a step lasts 12M + 11 units; the first stage computes 11M, the second 12M.
    assertThat(r.bubble(0)).isCloseTo(19.0 / 107, offset(0.002));
    assertThat(r.bubble(1)).isCloseTo(11.0 / 107, offset(0.002));
  }

  @Test
  void sharingTheCoresShortensTheBubble() {
    // While both stages compute each runs at 1/c of its speed; the fill and drain run alone, at full speed, so they
    // are a smaller share of the step: 1 / (M + 1 + (M − 1)(c − 1)) for two equal stages under GPipe.
    double c = 1.5;
    PipelineSim.Result r =
        PipelineSim.run(PipeSchedule.GPIPE, 4, 400, same(2, new PipelineSim.StageTimes(1, 2, 0, 0, c)));
    assertThat(r.meanBubble()).isCloseTo(1 / (4 + 1 + 3 * (c - 1)), offset(0.003));
    assertThat(r.meanBubble()).isLessThan(PipeSchedule.theoreticalBubble(2, 4) - 0.03);
  }

  @ParameterizedTest
  @EnumSource(PipeSchedule.class)
  void workBetweenStepsIsNoBubbleButTheNeighbourWaitsForWhatOneStageDoesMore(PipeSchedule schedule) {
    // Equal step work on both stages (the optimizer of equal halves) changes nothing.
    PipelineSim.Result equal = PipelineSim.run(schedule, 4, 400, same(2, new PipelineSim.StageTimes(1, 2, 0, 3, 1)));
    assertThat(equal.bubble(0)).isCloseTo(0.2, offset(0.002));
    assertThat(equal.bubble(1)).isCloseTo(0.2, offset(0.002));
    assertThat(equal.stepWorkSeconds()[0]).isCloseTo(399 * 3.0, offset(1e-6));
    // The first stage works 3 units more between steps: the second waits for them, every step.
    PipelineSim.Result more = PipelineSim.run(schedule, 4, 400,
        List.of(new PipelineSim.StageTimes(1, 2, 0, 3, 1), PipelineSim.StageTimes.compute(1, 2)));
    assertThat(more.bubble(0)).isCloseTo(0.2, offset(0.002));
    assertThat(more.bubble(1)).isCloseTo(6.0 / 18, offset(0.002));
  }

  @Test
  void refusesAnEmptyPipeline() {
    assertThatThrownBy(() -> PipelineSim.run(PipeSchedule.GPIPE, 4, 1, List.of()))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("0 stages");
  }
}
