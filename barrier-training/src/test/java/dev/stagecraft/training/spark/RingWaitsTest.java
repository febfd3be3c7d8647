package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.training.collective.WaitTimes;
import java.util.List;
import org.junit.jupiter.api.Test;

class RingWaitsTest {
  static TrainTask.Outcome outcome(int rank, int world, double inFrame, double sending) {
    WaitTimes w = new WaitTimes((rank + world - 1) % world, (rank + 1) % world, 5.0, inFrame, sending);
    return new TrainTask.Outcome(rank, "10.0.0." + rank, null, "cpu()", 10, null, List.of(), 1, 1, 1, 1, 1, 0, 0,
        null, null, null, w, null);
  }

  @Test
  void theRankWithBothLinksSlowIsNamedNotTheNeighboursThatWaitedOnIt() {
    // Rank 1's links are slow: rank 1 waits inside frames from rank 0, rank 2 inside frames from rank 1, and rank 0
    // is held back sending to rank 1. Everybody waited long before frames (the ring waits for its slowest).
    List<TrainTask.Outcome> ring = List.of(outcome(0, 3, 0.0, 0.2), outcome(1, 3, 0.3, 0.0), outcome(2, 3, 0.25, 0));
    assertThat(RingWaits.slowest(ring)).containsEntry("rank", 1).containsEntry("host", "10.0.0.1")
        .containsEntry("link_wait_s", 0.75);
    assertThat(RingWaits.perRank(ring).get(2)).containsEntry("waited_for_rank", 1).containsEntry("inside_frame_s",
        0.25).containsEntry("before_frame_s", 5.0).containsEntry("sending_to_rank", 0);
  }

  @Test
  void twoRanksOrWaitsThatAreAllComputeNameNoRank() {
    assertThat(RingWaits.slowest(List.of(outcome(0, 2, 0.5, 0), outcome(1, 2, 0.5, 0)))).isEmpty();
    assertThat(RingWaits.slowest(List.of(outcome(0, 3, 0, 0), outcome(1, 3, 0, 0), outcome(2, 3, 0, 0)))).isEmpty();
  }
}
