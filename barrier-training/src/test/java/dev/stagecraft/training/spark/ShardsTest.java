package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.training.loop.WorkerLoop;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The staged shards' file format: what a worker reads is what prepare wrote, and a damaged file is named. */
class ShardsTest {
  @TempDir
  Path dir;

  private final Configuration conf = new Configuration();

  @Test
  void aWorkerReadsBackExactlyTheRowsItsShardHolds() throws IOException {
    int rows = 300_000; // larger than one I/O buffer of floats, so reads and writes go in several pieces
    int nf = 3;
    float[] labels = new float[rows];
    float[] features = new float[rows * nf];
    for (int i = 0; i < rows; i++) {
      labels[i] = i % 2;
      for (int j = 0; j < nf; j++) {
        features[i * nf + j] = i * 0.5f - j + 1e-3f * j;
      }
    }
    Shards shards = new Shards(dir.toUri().toString(), 2, false, conf);
    Shards.writeShard(conf, Shards.path(dir.toUri().toString(), Shards.TRAIN, 1),
        new WorkerLoop.LocalData(features, labels, rows, nf));

    WorkerLoop.LocalData back = shards.read(Shards.TRAIN, 1);
    assertThat(back.rows()).isEqualTo(rows);
    assertThat(back.numFeatures()).isEqualTo(nf);
    assertThat(Arrays.equals(back.labels(), labels)).isTrue();
    assertThat(Arrays.equals(back.features(), features)).isTrue();
    assertThat(Files.exists(dir.resolve("train-00001.shard"))).isTrue();
  }

  @Test
  void anEmptyShardIsZeroRows() throws IOException {
    Shards shards = new Shards(dir.toUri().toString(), 1, true, conf);
    Shards.writeShard(conf, Shards.path(dir.toUri().toString(), Shards.VALIDATION, 0),
        new WorkerLoop.LocalData(new float[0], new float[0], 0, 4));
    WorkerLoop.LocalData back = shards.read(Shards.VALIDATION, 0);
    assertThat(back.rows()).isZero();
    assertThat(back.numFeatures()).isEqualTo(4);
  }

  @Test
  void aFileThatIsNotAShardIsReportedWithItsPathAndNothingIsRead() throws IOException {
    try (OutputStream out = Files.newOutputStream(dir.resolve("train-00000.shard"))) {
      out.write("PAR1 not a shard at all".getBytes(java.nio.charset.StandardCharsets.UTF_8));
    }
    Shards shards = new Shards(dir.toUri().toString(), 1, false, conf);
    assertThatThrownBy(() -> shards.read(Shards.TRAIN, 0)).isInstanceOf(IOException.class)
        .hasMessageContaining("Cannot read the staged train data of worker 0 at ")
        .hasMessageContaining("train-00000.shard")
        .hasMessageContaining("not a shard of this version");
  }

  @Test
  void aTruncatedShardFailsInsteadOfTrainingOnPartialData() throws IOException {
    String root = dir.toUri().toString();
    Shards.writeShard(conf, Shards.path(root, Shards.TRAIN, 0),
        new WorkerLoop.LocalData(new float[] {1, 2, 3, 4}, new float[] {0, 1}, 2, 2));
    Path file = dir.resolve("train-00000.shard");
    byte[] whole = Files.readAllBytes(file);
    Files.write(file, Arrays.copyOf(whole, whole.length - 3));
    // Hadoop's checksum or the end of the file: either way the error names the shard, and nothing trains on it.
    assertThatThrownBy(() -> new Shards(root, 1, false, conf).read(Shards.TRAIN, 0)).isInstanceOf(IOException.class)
        .hasMessageStartingWith("Cannot read the staged train data of worker 0 at ")
        .hasMessageContaining("train-00000.shard: ");
    Files.deleteIfExists(dir.resolve(".train-00000.shard.crc"));
    assertThatThrownBy(() -> new Shards(root, 1, false, conf).read(Shards.TRAIN, 0)).isInstanceOf(IOException.class)
        .hasMessageContaining("train-00000.shard: EOFException")
        .hasCauseInstanceOf(java.io.EOFException.class);
  }

  @Test
  void theHandOverToTheTrainingApplicationKeepsDirectoryWorkersAndValidation() {
    Shards shards = new Shards("hdfs://nn:8020/ws/runs/r/steps/fit/scratch-1", 3, true, conf);
    Map<String, Object> map = shards.toMap(List.of(5, 5, 4), List.of(2, 2, 1));
    Shards back = Shards.fromMap(map, conf);
    assertThat(back.workers()).isEqualTo(3);
    assertThat(back.hasValidation()).isTrue();
    assertThat(back.toString()).contains("hdfs://nn:8020/ws/runs/r/steps/fit/scratch-1").doesNotContain("secret");
    assertThat(map).containsEntry("train_rows", List.of(5, 5, 4)).containsEntry("validation_rows", List.of(2, 2, 1));
    assertThat(Shards.fromMap(shards.toMap(List.of(1), List.of()), conf).hasValidation()).isTrue();
  }
}
