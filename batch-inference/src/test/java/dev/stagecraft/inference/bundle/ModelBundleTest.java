package dev.stagecraft.inference.bundle;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelBundleTest {
  @TempDir java.nio.file.Path tmp;

  static BundleManifest manifest() {
    return new BundleManifest(BundleManifest.FORMAT_VERSION, "churn", "r1-1", "2026-11-27T00:00:00Z", "r1", "train",
        Map.of("type", "logistic", "task", "binary", "num_features", 2), List.of("a", "b"), null, "label",
        new BundleManifest.Standardization(new double[] {1, 2}, new double[] {0.5, 1}), List.of(0.0, 1.0),
        Map.of("accuracy", 0.85), Map.of("epochs", 3), null);
  }

  @Test
  void writesFilesThenAManifestThatVerifiesThem() throws Exception {
    FileSystem fs = FileSystem.getLocal(new Configuration()).getRaw();
    Path dir = new Path(tmp.toUri().toString(), "models/churn/r1-1");
    BundleManifest written = ModelBundle.write(fs, dir, manifest(), Map.of("weights.bin", new byte[] {1, 2, 3}));
    assertThat(written.files()).containsKey("weights.bin");
    assertThat(written.files().get("weights.bin").bytes()).isEqualTo(3);

    ModelBundle bundle = ModelBundle.open(fs, dir);
    assertThat(bundle.manifest()).isEqualTo(written);
    assertThat(bundle.manifest().standardization().std()).containsExactly(0.5, 1);
    assertThat(bundle.file("weights.bin")).containsExactly(1, 2, 3);

    Files.write(java.nio.file.Path.of(dir.toUri()).resolve("weights.bin"), new byte[] {1, 2, 4});
    assertThatThrownBy(() -> ModelBundle.open(fs, dir))
        .hasMessage("Invalid model bundle " + dir + ": file 'weights.bin' does not match its manifest (3 bytes, "
            + "expected 3 with SHA-256 " + written.files().get("weights.bin").sha256() + ")");
  }

  @Test
  void aFolderWithoutManifestIsNoBundle() throws Exception {
    FileSystem fs = FileSystem.getLocal(new Configuration()).getRaw();
    Path dir = new Path(tmp.toUri().toString(), "half-written");
    fs.mkdirs(dir);
    assertThatThrownBy(() -> ModelBundle.open(fs, dir))
        .hasMessage("Invalid model bundle " + dir + ": no manifest.json (expected a bundle written by a train step; "
            + "an interrupted write leaves none)");
  }

  @Test
  void aManifestWithAZeroStandardDeviationIsRefusedNamingTheFeature() throws Exception {
    FileSystem fs = FileSystem.getLocal(new Configuration()).getRaw();
    Path dir = new Path(tmp.toUri().toString(), "models/churn/r1-2");
    ModelBundle.write(fs, dir, manifest(), Map.of("weights.bin", new byte[] {1}));
    java.nio.file.Path manifest = java.nio.file.Path.of(dir.toUri()).resolve("manifest.json");
    String json = Files.readString(manifest);
    String zeroed = json.replaceFirst("(\"std\"\\s*:\\s*\\[\\s*0\\.5\\s*,\\s*)1\\.0", "$10.0");
    assertThat(zeroed).isNotEqualTo(json);
    Files.writeString(manifest, zeroed);
    assertThatThrownBy(() -> ModelBundle.open(fs, dir))
        .hasMessageStartingWith("Invalid model bundle " + dir + ": cannot parse manifest.json: ")
        .hasMessageContaining("Invalid standardisation of feature 1: mean 2.0, standard deviation 0.0 (expected a "
            + "finite mean and a positive, finite deviation)");
  }
}
