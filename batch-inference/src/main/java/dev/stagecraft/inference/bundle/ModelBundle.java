package dev.stagecraft.inference.bundle;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.fs.VerifiedFiles;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Writes and reads model bundles on any Hadoop FileSystem: data files first, then {@code manifest.json} (listing every
 * file with its size and SHA-256) as one atomic write. A folder without a manifest is not a bundle; a reader verifies
 * each file against the manifest and names the file that does not match.
 */
public final class ModelBundle {
  public static final String MANIFEST = "manifest.json";
  public static final String WEIGHTS = "weights.bin";
  public static final String LOSS_CURVE = "loss.png";

  static final ObjectMapper JSON = new ObjectMapper()
      .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
      .enable(SerializationFeature.INDENT_OUTPUT)
      .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);

  private final FileSystem fs;
  private final Path dir;
  private final BundleManifest manifest;

  private ModelBundle(FileSystem fs, Path dir, BundleManifest manifest) {
    this.fs = fs;
    this.dir = dir;
    this.manifest = manifest;
  }

  /** Writes {@code files} (name → content) into {@code dir}, then the manifest listing them. */
  public static BundleManifest write(FileSystem fs, Path dir, BundleManifest manifest, Map<String, byte[]> files)
      throws IOException {
    Map<String, BundleManifest.FileEntry> entries = new LinkedHashMap<>();
    if (files.containsKey(MANIFEST)) {
      throw new IllegalArgumentException("Invalid bundle file name: '" + MANIFEST + "' (written by the bundle)");
    }
    VerifiedFiles.write(fs, dir, files).forEach((name, e) ->
        entries.put(name, new BundleManifest.FileEntry(e.bytes(), e.sha256())));
    BundleManifest complete = manifest.withFiles(entries);
    AtomicFiles.write(fs, new Path(dir, MANIFEST), JSON.writeValueAsBytes(complete));
    return complete;
  }

  /**
   * Opens the bundle in {@code dir}, checking that every file the manifest lists is there with its size and checksum.
   *
   * @throws StagecraftException (user) naming the bundle and the file that is missing or does not match
   */
  public static ModelBundle open(FileSystem fs, Path dir) {
    Optional<byte[]> bytes;
    try {
      bytes = AtomicFiles.read(fs, new Path(dir, MANIFEST));
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read model bundle %s: %s", dir, e.getMessage());
    }
    if (bytes.isEmpty()) {
      throw StagecraftException.user("Invalid model bundle %s: no %s (expected a bundle written by a train step; an "
          + "interrupted write leaves none)", dir, MANIFEST);
    }
    BundleManifest m;
    try {
      m = JSON.readValue(bytes.get(), BundleManifest.class);
    } catch (IOException e) {
      throw StagecraftException.user("Invalid model bundle %s: cannot parse %s: %s", dir, MANIFEST, e.getMessage());
    }
    if (m.formatVersion() > BundleManifest.FORMAT_VERSION) {
      throw StagecraftException.user("Invalid model bundle %s: format version %d (this Stagecraft reads up to %d)", dir,
          m.formatVersion(), BundleManifest.FORMAT_VERSION);
    }
    ModelBundle bundle = new ModelBundle(fs, dir, m);
    for (String name : m.files().keySet()) {
      bundle.file(name);
    }
    return bundle;
  }

  public BundleManifest manifest() {
    return manifest;
  }

  public Path dir() {
    return dir;
  }

  /** A file of the bundle, verified against the manifest. */
  public byte[] file(String name) {
    BundleManifest.FileEntry entry = manifest.files().get(name);
    if (entry == null) {
      throw StagecraftException.user("Invalid model bundle %s: no file '%s' in its manifest (has: %s)", dir, name,
          String.join(", ", manifest.files().keySet()));
    }
    try {
      return VerifiedFiles.read(fs, dir, name, new VerifiedFiles.Entry(entry.bytes(), entry.sha256()));
    } catch (VerifiedFiles.Mismatch e) {
      throw StagecraftException.user("Invalid model bundle %s: %s", dir, e.getMessage());
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read %s of model bundle %s: %s", name, dir, e.getMessage());
    }
  }
}
