package dev.stagecraft.fs;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Local-file-system specifics of {@link VerifiedFiles}; the store contract on HDFS and S3 is CheckpointStoreTest's. */
class VerifiedFilesTest {
  @TempDir java.nio.file.Path dir;

  @Test
  void onTheLocalFileSystemTheManifestChecksumsReplaceHadoopsCrcSidecars() throws Exception {
    LocalFileSystem fs = FileSystem.getLocal(new Configuration());
    Path folder = new Path(dir.toUri().toString(), "v1");
    Map<String, byte[]> files = new LinkedHashMap<>();
    byte[] big = new byte[200_000]; // several write chunks
    for (int i = 0; i < big.length; i++) {
      big[i] = (byte) (i * 31);
    }
    files.put("weights.bin", big);
    files.put("small.json", "{}".getBytes(StandardCharsets.UTF_8));

    Map<String, VerifiedFiles.Entry> entries = VerifiedFiles.write(fs, folder, files);

    assertThat(entries.get("weights.bin")).isEqualTo(new VerifiedFiles.Entry(big.length, VerifiedFiles.sha256(big)));
    try (var listing = Files.list(dir.resolve("v1"))) {
      assertThat(listing.map(p -> p.getFileName().toString())).containsExactlyInAnyOrder("weights.bin", "small.json");
    }
    assertThat(VerifiedFiles.read(fs, folder, "weights.bin", entries.get("weights.bin"))).isEqualTo(big);
  }

  @Test
  void aStaleCrcSidecarFromAnEarlierWriteCannotFailTheReadOfTheNewContent() throws Exception {
    LocalFileSystem fs = FileSystem.getLocal(new Configuration());
    Path folder = new Path(dir.toUri().toString(), "v1");
    try (var out = fs.create(new Path(folder, "state.json"), true)) { // through Hadoop: writes .state.json.crc
      out.write("old content".getBytes(StandardCharsets.UTF_8));
    }
    assertThat(dir.resolve("v1/.state.json.crc")).exists();

    byte[] now = "new".getBytes(StandardCharsets.UTF_8);
    Map<String, VerifiedFiles.Entry> entries = VerifiedFiles.write(fs, folder, Map.of("state.json", now));

    assertThat(dir.resolve("v1/.state.json.crc")).doesNotExist();
    assertThat(VerifiedFiles.read(fs, folder, "state.json", entries.get("state.json"))).isEqualTo(now);
    assertThatThrownBy(() -> VerifiedFiles.read(fs, folder, "state.json",
        new VerifiedFiles.Entry(now.length, VerifiedFiles.sha256("old".getBytes(StandardCharsets.UTF_8)))))
        .isInstanceOf(VerifiedFiles.Mismatch.class).hasMessageStartingWith("file 'state.json' does not match");
  }
}
