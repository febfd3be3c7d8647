package dev.stagecraft.training.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;

import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.fs.VerifiedFiles;
import dev.stagecraft.testing.HadoopStores;
import dev.stagecraft.testing.HadoopStores.Store;
import dev.stagecraft.testing.LogCapture;
import dev.stagecraft.testing.S3Proxy;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.logging.log4j.Level;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The checkpoint store's contract, the same cases on the local file system, HDFS and S3 (s3proxy through S3A). */
class CheckpointStoreTest {
  @RegisterExtension static final HadoopStores STORES = new HadoopStores();

  static Stream<Store> stores() throws IOException {
    return STORES.fresh("checkpoints");
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void theNewestCompleteCheckpointWinsAndRetentionKeepsK(Store store) throws Exception {
    FileSystem fs = store.fs();
    Path root = new Path(store.root(), "checkpoints/r1/train");
    CheckpointStore checkpoints = new CheckpointStore(fs, root, 2);
    for (long step : new long[] {100, 200, 300}) {
      checkpoints.write(step, (int) (step / 100), "fp", Map.of("params.bin", new byte[] {(byte) step}));
    }
    assertThat(children(fs, root)).containsExactly("step-200", "step-300");
    assertThat(children(fs, new Path(root, "step-300"))).containsExactly("manifest.json", "params.bin");
    CheckpointStore.Loaded l = checkpoints.latestValid("fp").orElseThrow();
    assertThat(l.manifest().globalStep()).isEqualTo(300);
    assertThat(l.manifest().epoch()).isEqualTo(3);
    assertThat(l.dir()).isEqualTo(fs.makeQualified(new Path(root, "step-300")));
    assertThat(l.files().get("params.bin")).containsExactly((byte) 300);
    assertThat(l.skipped()).isEmpty();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void incompleteAndCorruptCheckpointsAreSkippedWithTheirReason(Store store) throws Exception {
    FileSystem fs = store.fs();
    Path root = new Path(store.root(), "ck");
    CheckpointStore checkpoints = new CheckpointStore(fs, root, 10);
    byte[] params = {1, 2, 3};
    for (long step = 10; step <= 60; step += 10) {
      checkpoints.write(step, (int) step, "fp", Map.of("params.bin", params, "optimizer.bin", new byte[] {7}));
    }
    overwrite(fs, new Path(root, "step-20/params.bin"), new byte[] {1, 2, 4}); // same size, wrong checksum
    overwrite(fs, new Path(root, "step-30/params.bin"), new byte[] {1, 2}); // truncated
    fs.delete(new Path(root, "step-40/params.bin"), false); // a data file lost
    overwrite(fs, new Path(root, "step-50/manifest.json"), "{\"format_version\": 1, \"glob".getBytes(
        StandardCharsets.UTF_8)); // a manifest cut short (no store publishes one like this, but a disk can)
    fs.delete(new Path(root, "step-60/manifest.json"), false); // the writer died before the manifest

    CheckpointStore.Loaded l = checkpoints.latestValid("fp").orElseThrow();
    assertThat(l.manifest().globalStep()).isEqualTo(10);
    assertThat(l.files()).containsOnlyKeys("params.bin", "optimizer.bin");
    String expected = "expected 3 with SHA-256 " + VerifiedFiles.sha256(params) + ")";
    assertThat(l.skipped()).hasSize(5);
    assertThat(l.skipped().get(0)).isEqualTo("step-60: incomplete (no manifest)");
    assertThat(l.skipped().get(1)).startsWith("step-50: corrupt manifest (");
    assertThat(l.skipped().subList(2, 5)).containsExactly(
        "step-40: corrupt (file 'params.bin' is missing)",
        "step-30: corrupt (file 'params.bin' does not match its manifest (2 bytes, " + expected + ")",
        "step-20: corrupt (file 'params.bin' does not match its manifest (3 bytes, " + expected + ")");
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void aCheckpointOfAnotherConfigurationIsRefused(Store store) throws Exception {
    FileSystem fs = store.fs();
    Path root = new Path(store.root(), "ck2");
    CheckpointStore checkpoints = new CheckpointStore(fs, root, 1);
    checkpoints.write(5, 1, "old", Map.of("params.bin", new byte[] {1}));
    assertThatThrownBy(() -> checkpoints.latestValid("new"))
        .hasMessage("Cannot resume from checkpoint " + new Path(root, "step-5") + ": it was written for another "
            + "model or training configuration (fingerprint old, expected new); to discard it and start fresh, set "
            + "'checkpoint: { resume: fresh }' in the step");
    assertThat(new CheckpointStore(fs, new Path(store.root(), "none"), 1).latestValid("x")).isEmpty();
  }

  /**
   * Issue #4: S3 credentials never appear in logs, exceptions or manifests. Everything Stagecraft, Hadoop and the AWS
   * SDK log at DEBUG is captured while checkpoints are written, one is found corrupt and skipped, and three
   * operations fail: a bucket that does not exist, a wrong secret key, and a checkpoint of another configuration.
   */
  @Test
  void s3CredentialsAppearInNoLogLineExceptionOrManifest() throws Exception {
    S3Proxy s3 = STORES.s3();
    String secret = s3.secretKey();
    String wrongSecret = "sk-wrong-" + Long.toHexString(System.nanoTime());
    Path root = new Path(s3.bucketUri().resolve("secrets/checkpoints"));
    List<Throwable> failures = new ArrayList<>();
    List<String> lines;
    byte[] manifest;
    // Both AWS SDKs: v1 (com.amazonaws) under Hadoop 3.3's S3A on the Spark 3.5 line, v2 (software.amazon.awssdk, its
    // shaded HTTP client's wire log included) under Hadoop 3.5's on the Spark 4 line.
    try (LogCapture logs = LogCapture.everything(Level.DEBUG, "dev.stagecraft", "org.apache.hadoop", "com.amazonaws",
        "software.amazon")) {
      // New clients (not the cached ones), so that their initialisation is logged too.
      try (FileSystem fs = FileSystem.newInstance(root.toUri(), s3.configuration())) {
        CheckpointStore checkpoints = new CheckpointStore(fs, root, 2);
        checkpoints.write(1, 0, "fp", Map.of("params.bin", new byte[] {1}));
        checkpoints.write(2, 0, "fp", Map.of("params.bin", new byte[] {2}));
        overwrite(fs, new Path(root, "step-2/params.bin"), new byte[] {3});
        CheckpointStore.Loaded l = checkpoints.latestValid("fp").orElseThrow();
        assertThat(l.skipped()).singleElement().asString().startsWith("step-2: corrupt (");
        assertThat(l.dir().toString()).doesNotContain(secret);
        manifest = AtomicFiles.read(fs, new Path(l.dir(), "manifest.json")).orElseThrow();
        failures.add(catchThrowable(() -> checkpoints.latestValid("another")));
      }
      Path elsewhere = new Path("s3a://no-such-bucket-" + Long.toHexString(System.nanoTime()) + "/checkpoints");
      try (FileSystem fs = FileSystem.newInstance(elsewhere.toUri(), s3.configuration())) {
        failures.add(catchThrowable(() -> new CheckpointStore(fs, elsewhere, 1)
            .write(1, 0, "fp", Map.of("params.bin", new byte[] {1}))));
      }
      Configuration wrong = s3.configuration();
      wrong.set("fs.s3a.secret.key", wrongSecret);
      try (FileSystem fs = FileSystem.newInstance(root.toUri(), wrong)) {
        failures.add(catchThrowable(() -> new CheckpointStore(fs, root, 1).latestValid("fp")));
      }
      lines = logs.lines();
    }

    assertThat(failures).hasSize(3).doesNotContainNull();
    assertThat(failures.get(0)).hasMessageContaining("written for another model or training configuration");
    assertThat(failures.get(1)).hasMessageContaining("NoSuchBucket");
    assertThat(failures.get(2)).hasMessageContaining("403");
    for (Throwable t : failures) {
      assertThat(stackTrace(t)).doesNotContain(secret).doesNotContain(wrongSecret);
    }
    // The capture saw the work at DEBUG, Stagecraft's warning and the clients' own logging included.
    assertThat(lines).anyMatch(l -> l.startsWith("WARN dev.stagecraft.") && l.contains("Skipped checkpoint step-2"));
    assertThat(lines).anyMatch(l -> l.startsWith("DEBUG org.apache.hadoop.fs.s3a."));
    assertThat(lines).anyMatch(l -> l.startsWith("DEBUG com.amazonaws.") || l.startsWith("DEBUG software.amazon."));
    assertThat(lines).noneMatch(l -> l.contains(secret) || l.contains(wrongSecret));
    assertThat(new String(manifest, StandardCharsets.UTF_8)).doesNotContain(secret);
  }

  private static List<String> children(FileSystem fs, Path dir) throws IOException {
    List<String> names = new ArrayList<>();
    for (FileStatus s : fs.listStatus(dir)) {
      names.add(s.getPath().getName());
    }
    names.sort(null);
    return names;
  }

  private static void overwrite(FileSystem fs, Path file, byte[] content) throws IOException {
    try (FSDataOutputStream out = fs.create(file, true)) {
      out.write(content);
    }
  }

  private static String stackTrace(Throwable t) {
    StringWriter out = new StringWriter();
    t.printStackTrace(new PrintWriter(out));
    return out.toString();
  }
}
