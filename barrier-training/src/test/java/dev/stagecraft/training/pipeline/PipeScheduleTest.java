package dev.stagecraft.training.pipeline;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

class PipeScheduleTest {
  @Test
  void twoStagesFourMicroBatchesRunInTheOrdersThePapersDescribe() {
    assertThat(PipeSchedule.GPIPE.ops(0, 2, 4).toString()).isEqualTo("[F0, F1, F2, F3, B3, B2, B1, B0]");
    assertThat(PipeSchedule.ONE_F_ONE_B.ops(0, 2, 4).toString()).isEqualTo("[F0, F1, B0, F2, B1, F3, B2, B3]");
    assertThat(PipeSchedule.ONE_F_ONE_B.ops(1, 2, 4).toString()).isEqualTo("[F0, B0, F1, B1, F2, B2, F3, B3]");
  }

  @Test
  void everyMicroBatchRunsForwardThenBackwardOnceAndOneFOneBHoldsAtMostPMinusSOfThem() {
    for (PipeSchedule schedule : PipeSchedule.values()) {
      for (int stages = 1; stages <= 4; stages++) {
        for (int m = 1; m <= 16; m++) {
          for (int s = 0; s < stages; s++) {
            List<PipeSchedule.Op> ops = schedule.ops(s, stages, m);
            assertThat(ops).hasSize(2 * m);
            Set<Integer> forwarded = new HashSet<>();
            Set<Integer> backwarded = new HashSet<>();
            for (PipeSchedule.Op op : ops) {
              if (op.forward()) {
                assertThat(forwarded.add(op.microBatch())).isTrue();
              } else {
                assertThat(forwarded).contains(op.microBatch());
                assertThat(backwarded.add(op.microBatch())).isTrue();
              }
            }
            int peak = PipeSchedule.peakHeld(ops);
            if (schedule == PipeSchedule.GPIPE) {
              assertThat(peak).isEqualTo(m);
            } else {
              assertThat(peak).as("1f1b stage %d of %d, %d micro-batches", s, stages, m)
                  .isEqualTo(Math.min(stages - s, m)).isLessThanOrEqualTo(stages);
            }
          }
        }
      }
    }
  }

  @Test
  void theBubbleIsPMinusOneOverMPlusPMinusOne() {
    assertThat(PipeSchedule.theoreticalBubble(2, 4)).isEqualTo(0.2);
    assertThat(PipeSchedule.theoreticalBubble(1, 4)).isZero();
    assertThat(PipeSchedule.theoreticalBubble(4, 13)).isEqualTo(0.1875);
  }

  @Test
  void schedulesParseByTheirWorkflowNames() {
    assertThat(PipeSchedule.parse("GPipe")).isEqualTo(PipeSchedule.GPIPE);
    assertThat(PipeSchedule.parse("1f1b")).isEqualTo(PipeSchedule.ONE_F_ONE_B);
    assertThatThrownBy(() -> PipeSchedule.parse("interleaved")).hasMessage(
        "'interleaved' (expected one of: gpipe, 1f1b)");
    assertThatThrownBy(() -> PipeSchedule.GPIPE.ops(2, 2, 4)).isInstanceOf(IllegalArgumentException.class);
  }
}
