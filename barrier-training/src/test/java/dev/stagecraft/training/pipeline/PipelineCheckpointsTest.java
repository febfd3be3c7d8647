package dev.stagecraft.training.pipeline;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.training.checkpoint.CheckpointPolicy;
import dev.stagecraft.training.checkpoint.CheckpointStore;
import dev.stagecraft.training.loop.WorkerLoop;
import java.nio.file.Files;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A pipeline's checkpoints: one shard per stage and one manifest; a resume restores every stage at one step and
 * continues exactly where an uninterrupted run would be; a checkpoint one stage cannot read is never used.
 */
class PipelineCheckpointsTest {
  @TempDir java.nio.file.Path tmp;

  private static final CheckpointPolicy EVERY_4 = new CheckpointPolicy(4, 0, 10, CheckpointPolicy.WhenBusy.WAIT,
      CheckpointPolicy.Resume.LATEST);

  private CheckpointStore store() throws Exception {
    FileSystem fs = FileSystem.getLocal(new Configuration());
    return new CheckpointStore(fs, new Path(tmp.toUri().toString(), "ck"), 10);
  }

  @Test
  void aResumedRunContinuesEveryStageWhereTheUninterruptedRunWasBitForBit() throws Exception {
    WorkerLoop.LocalData all = PipelineLoopTest.data(320, 21); // 10 steps of 32 per epoch
    Parallelism par = new Parallelism(2, 4, PipeSchedule.ONE_F_ONE_B, null);
    StageSplit split = PipelineLoopTest.split(2);
    List<PipelineLoop.Result> whole = PipelineLoopTest.pipelined(List.of(all), new WorkerLoop.Config(2, 32, true, 3),
        par, split);

    CheckpointStore store = store();
    List<PipelineLoop.Result> first = PipelineLoopTest.pipelined(List.of(all), new WorkerLoop.Config(1, 32, true, 3),
        par, split, store, EVERY_4);
    assertThat(first.get(0).steps()).isEqualTo(10);
    // Steps 4 and 8, and the end (10): each with both stages' shards under one manifest.
    assertThat(children(tmp.resolve("ck"))).containsExactly("step-10", "step-4", "step-8");
    assertThat(children(tmp.resolve("ck/step-8"))).contains("manifest.json", "stage-0-parameters.bin",
        "stage-1-parameters.bin", "stage-1-optimizer.bin");
    String manifest = Files.readString(tmp.resolve("ck/step-8/manifest.json"));
    assertThat(manifest).contains("stage-0-parameters.bin", "stage-1-parameters.bin", "stage-1-optimizer.bin");

    // The same run, asked for two epochs, resumes from step 10 (epochs may change between runs).
    List<PipelineLoop.Result> resumed = PipelineLoopTest.pipelined(List.of(all),
        new WorkerLoop.Config(2, 32, true, 3), par, split, store, EVERY_4);
    assertThat(resumed.get(0).steps()).isEqualTo(20);
    assertThat(resumed.get(0).lossCurve()).hasSize(20);
    for (int i = 0; i < 20; i++) {
      assertThat(resumed.get(0).lossCurve().get(i)[2]).as("loss of step %d", i + 1)
          .isEqualTo(whole.get(0).lossCurve().get(i)[2]);
    }
    for (int s = 0; s < 2; s++) {
      assertThat(resumed.get(s).parameters()).as("stage %d", s).containsExactly(whole.get(s).parameters());
    }
  }

  @Test
  void aCheckpointWhoseShardOfOneStageIsBrokenIsDeletedAndTheOlderOneUsed() throws Exception {
    WorkerLoop.LocalData all = PipelineLoopTest.data(320, 22);
    Parallelism par = new Parallelism(2, 4, PipeSchedule.GPIPE, null);
    StageSplit split = PipelineLoopTest.split(2);
    CheckpointStore store = store();
    PipelineLoopTest.pipelined(List.of(all), new WorkerLoop.Config(1, 32, true, 3), par, split, store, EVERY_4);
    // Stage 1's parameters of the newest checkpoint torn (as a store that lost the file's end would leave it).
    java.nio.file.Path torn = tmp.resolve("ck/step-10/stage-1-parameters.bin");
    byte[] b = Files.readAllBytes(torn);
    Files.write(torn, java.util.Arrays.copyOf(b, b.length / 2));
    // An incomplete one (shards, no manifest), newer still: never proposed.
    Files.createDirectories(tmp.resolve("ck/step-12"));
    Files.write(tmp.resolve("ck/step-12/stage-0-parameters.bin"), new byte[] {1, 2, 3});

    List<PipelineLoop.Result> resumed = PipelineLoopTest.pipelined(List.of(all),
        new WorkerLoop.Config(2, 32, true, 3), par, split, store, EVERY_4);
    List<PipelineLoop.Result> whole = PipelineLoopTest.pipelined(List.of(all), new WorkerLoop.Config(2, 32, true, 3),
        par, split);
    assertThat(resumed.get(0).lossCurve()).hasSize(20);
    for (int i = 0; i < 20; i++) {
      assertThat(resumed.get(0).lossCurve().get(i)[2]).as("loss of step %d", i + 1)
          .isEqualTo(whole.get(0).lossCurve().get(i)[2]);
    }
    assertThat(resumed.get(1).parameters()).containsExactly(whole.get(1).parameters());
    // Resumed from step 8: step-10 (broken) and step-12 (incomplete) are gone; the run wrote 12, 16 and 20.
    assertThat(children(tmp.resolve("ck"))).containsExactly("step-12", "step-16", "step-20", "step-4", "step-8");
  }

  private static List<String> children(java.nio.file.Path dir) throws Exception {
    try (var s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).filter(n -> !n.startsWith(".")).sorted().toList();
    }
  }
}
