package dev.stagecraft.training.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointStoreTest {
  @TempDir java.nio.file.Path tmp;

  FileSystem fs() throws Exception {
    return FileSystem.getLocal(new Configuration()).getRaw();
  }

  @Test
  void theNewestCompleteCheckpointWinsAndRetentionKeepsK() throws Exception {
    Path root = new Path(tmp.toUri().toString(), "checkpoints/r1/train");
    CheckpointStore store = new CheckpointStore(fs(), root, 2);
    for (long step : new long[] {100, 200, 300}) {
      store.write(step, (int) (step / 100), "fp", Map.of("params.bin", new byte[] {(byte) step}));
    }
    assertThat(Files.list(java.nio.file.Path.of(root.toUri())).map(p -> p.getFileName().toString()).sorted())
        .containsExactly("step-200", "step-300");
    CheckpointStore.Loaded l = store.latestValid("fp").orElseThrow();
    assertThat(l.manifest().globalStep()).isEqualTo(300);
    assertThat(l.files().get("params.bin")).containsExactly((byte) 300);
    assertThat(l.skipped()).isEmpty();
  }

  @Test
  void incompleteAndCorruptCheckpointsAreSkippedWithTheirReason() throws Exception {
    Path root = new Path(tmp.toUri().toString(), "ck");
    CheckpointStore store = new CheckpointStore(fs(), root, 5);
    store.write(10, 1, "fp", Map.of("params.bin", new byte[] {1, 2, 3}));
    store.write(20, 2, "fp", Map.of("params.bin", new byte[] {4, 5, 6}));
    Files.write(java.nio.file.Path.of(root.toUri()).resolve("step-20/params.bin"), new byte[] {4, 5, 7});
    Files.createDirectories(java.nio.file.Path.of(root.toUri()).resolve("step-30"));
    Files.write(java.nio.file.Path.of(root.toUri()).resolve("step-30/params.bin"), new byte[] {9});

    CheckpointStore.Loaded l = store.latestValid("fp").orElseThrow();
    assertThat(l.manifest().globalStep()).isEqualTo(10);
    assertThat(l.skipped()).containsExactly("step-30: incomplete (no manifest)",
        "step-20: corrupt (file 'params.bin' does not match its manifest (3 bytes, expected 3 with SHA-256 "
            + dev.stagecraft.fs.VerifiedFiles.sha256(new byte[] {4, 5, 6}) + "))");
  }

  @Test
  void aCheckpointOfAnotherConfigurationIsRefused() throws Exception {
    Path root = new Path(tmp.toUri().toString(), "ck2");
    CheckpointStore store = new CheckpointStore(fs(), root, 1);
    store.write(5, 1, "old", Map.of("params.bin", new byte[] {1}));
    assertThatThrownBy(() -> store.latestValid("new"))
        .hasMessageStartingWith("Cannot resume from checkpoint ")
        .hasMessageEndingWith("it was written for another model or training configuration (fingerprint old, "
            + "expected new); to discard it and start fresh, set 'checkpoint: { resume: fresh }' in the step");
    assertThat(new CheckpointStore(fs(), new Path(tmp.toUri().toString(), "none"), 1).latestValid("x")).isEmpty();
  }
}
