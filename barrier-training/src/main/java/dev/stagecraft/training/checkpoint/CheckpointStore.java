package dev.stagecraft.training.checkpoint;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.fs.VerifiedFiles;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Checkpoints of one training step in a folder of any Hadoop FileSystem ({@code checkpoints/RUN-ID/STEP/}):
 * {@code step-N/} holds the data files and, written last as one object, {@code manifest.json} listing each file's
 * size and SHA-256. A checkpoint exists only once its manifest does — no rename anywhere, so the protocol holds on S3.
 * Retention keeps the newest {@code keep} complete checkpoints and deletes older ones only after a newer one is
 * complete. The training loop writes through a {@link CheckpointWriter} (in the background) and resumes from
 * {@link #latestValid}.
 */
public final class CheckpointStore {
  private static final Logger LOG = LoggerFactory.getLogger(CheckpointStore.class);
  static final String MANIFEST = "manifest.json";
  private static final Pattern STEP_DIR = Pattern.compile("step-(\\d+)");
  private static final ObjectMapper JSON = new ObjectMapper()
      .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
      .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);

  /**
   * What a checkpoint says about itself.
   *
   * @param fingerprint of the model and training configuration; a checkpoint of another fingerprint is refused
   * @param files file name → size and SHA-256, filled in by {@link #write}
   */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public record Manifest(int formatVersion, long globalStep, int epoch, String fingerprint, String created,
      Map<String, VerifiedFiles.Entry> files) {
    public static final int FORMAT_VERSION = 1;

    public Manifest {
      files = files == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(files));
    }
  }

  /** A checkpoint read back and verified, with the newer ones skipped on the way and why. */
  public record Loaded(Path dir, Manifest manifest, Map<String, byte[]> files, List<String> skipped) {}

  private final FileSystem fs;
  private final Path root;
  private final int keep;

  public CheckpointStore(FileSystem fs, Path root, int keep) {
    if (keep < 1) {
      throw new IllegalArgumentException("Invalid checkpoint 'keep': " + keep + " (expected at least 1)");
    }
    this.fs = fs;
    this.root = root;
    this.keep = keep;
  }

  /** The folder of this store's checkpoints. */
  public Path root() {
    return root;
  }

  /** Writes a checkpoint of {@code globalStep}: data files, then the manifest; then applies retention. */
  public Path write(long globalStep, int epoch, String fingerprint, Map<String, byte[]> files) throws IOException {
    return write(globalStep, epoch, fingerprint, files, Commit.ALWAYS);
  }

  /**
   * The commit point of a write, the manifest, seen by whoever may give the write up: {@link #begin} is asked just
   * before the manifest is written and throws to stop the write there (its step folder then has no manifest, so nothing
   * ever uses it); {@link #end} comes once the manifest is written, before retention, and throws if the write was given
   * up meanwhile (the store then deletes the step's folder again).
   */
  public interface Commit {
    Commit ALWAYS = new Commit() {
      @Override
      public void begin() {}

      @Override
      public void end() {}
    };

    void begin() throws IOException;

    void end() throws IOException;
  }

  /** {@link #write(long, int, String, Map)}, the manifest written only as {@code commit} allows. */
  public Path write(long globalStep, int epoch, String fingerprint, Map<String, byte[]> files, Commit commit)
      throws IOException {
    Path dir = new Path(root, "step-" + globalStep);
    fs.delete(dir, true); // an interrupted write of this step left files without a manifest
    Map<String, VerifiedFiles.Entry> entries = VerifiedFiles.write(fs, dir, files);
    Manifest m = new Manifest(Manifest.FORMAT_VERSION, globalStep, epoch, fingerprint,
        java.time.Instant.now().toString(), entries);
    commit.begin();
    try {
      AtomicFiles.write(fs, new Path(dir, MANIFEST), JSON.writeValueAsBytes(m));
      commit.end();
    } catch (IOException | RuntimeException e) {
      // Published after it was given up, or its write failed part-way (a store that creates the file before it
      // fails, an interrupted call): taken back, so that no manifest of a write that did not succeed remains.
      try {
        fs.delete(dir, true);
      } catch (IOException | RuntimeException again) {
        e.addSuppressed(again); // the store still fails: the next upload deletes an abandoned step's folder, and
        // readers skip a manifest that does not parse or verify
      }
      throw e;
    }
    retain();
    return fs.makeQualified(dir);
  }

  /**
   * Writes one shard of the checkpoint of {@code globalStep} (a pipeline stage's files, named e.g.
   * {@code stage-1-parameters.bin}) into its folder, beside the other shards, and returns their entries for the
   * manifest. Nothing uses the shard until {@link #commitShards} publishes a manifest that lists it.
   */
  public Map<String, VerifiedFiles.Entry> writeShard(long globalStep, Map<String, byte[]> files) throws IOException {
    return VerifiedFiles.write(fs, new Path(root, "step-" + globalStep), files);
  }

  /**
   * Publishes the checkpoint of {@code globalStep} once every shard is written: one manifest listing every shard's
   * files, written last, then retention.
   */
  public Path commitShards(long globalStep, int epoch, String fingerprint, Map<String, VerifiedFiles.Entry> entries)
      throws IOException {
    Path dir = new Path(root, "step-" + globalStep);
    Manifest m = new Manifest(Manifest.FORMAT_VERSION, globalStep, epoch, fingerprint,
        java.time.Instant.now().toString(), entries);
    try {
      AtomicFiles.write(fs, new Path(dir, MANIFEST), JSON.writeValueAsBytes(m));
    } catch (IOException | RuntimeException e) {
      try {
        fs.delete(new Path(dir, MANIFEST), false); // a manifest whose write failed part-way is taken back
      } catch (IOException | RuntimeException again) {
        e.addSuppressed(again);
      }
      throw e;
    }
    retain();
    return fs.makeQualified(dir);
  }

  /**
   * The steps of the complete checkpoints of {@code fingerprint}, newest first: those with a readable manifest
   * (their shards are verified when each worker reads its own, {@link #readShard}). Incomplete ones are skipped with
   * a log line.
   *
   * @throws StagecraftException (user) if the newest complete checkpoint belongs to another configuration
   */
  public List<Long> completeSteps(String fingerprint) throws IOException {
    List<Long> out = new ArrayList<>();
    for (Long step : steps()) {
      Manifest m;
      try {
        m = manifest(step);
      } catch (Invalid e) {
        LOG.warn("Skipped checkpoint {}", e.getMessage());
        continue;
      }
      if (!m.fingerprint().equals(fingerprint)) {
        if (out.isEmpty()) {
          throw refusal(fs.makeQualified(new Path(root, "step-" + step)), m.fingerprint(), fingerprint);
        }
        continue;
      }
      out.add(step);
    }
    return out;
  }

  /**
   * Reads and verifies the files of the checkpoint of {@code step} under {@code prefix} (one shard), returned with
   * the prefix taken off their names.
   *
   * @throws IOException naming the checkpoint and what is wrong: no manifest, another fingerprint, no such shard, or
   *     a file missing or not matching its size and checksum
   */
  public Map<String, byte[]> readShard(long step, String fingerprint, String prefix) throws IOException {
    Path dir = new Path(root, "step-" + step);
    try {
      Manifest m = manifest(step);
      if (!m.fingerprint().equals(fingerprint)) {
        throw new Invalid("step-" + step + ": fingerprint " + m.fingerprint() + ", expected " + fingerprint);
      }
      Map<String, byte[]> files = new LinkedHashMap<>();
      for (Map.Entry<String, VerifiedFiles.Entry> f : m.files().entrySet()) {
        if (f.getKey().startsWith(prefix)) {
          try {
            files.put(f.getKey().substring(prefix.length()), VerifiedFiles.read(fs, dir, f.getKey(), f.getValue()));
          } catch (VerifiedFiles.Mismatch e) {
            throw new Invalid("step-" + step + ": corrupt (" + e.getMessage() + ")");
          }
        }
      }
      if (files.isEmpty()) {
        throw new Invalid("step-" + step + ": no files under '" + prefix + "'");
      }
      return files;
    } catch (Invalid e) {
      throw new IOException("Cannot load checkpoint " + fs.makeQualified(dir) + ": " + e.getMessage());
    }
  }

  /** Deletes the folder of {@code step}'s checkpoint, complete or not (a write that was abandoned). */
  public void discard(long step) throws IOException {
    fs.delete(new Path(root, "step-" + step), true);
  }

  /**
   * The newest checkpoint whose manifest verifies, skipping incomplete (no manifest) and corrupt (missing file,
   * size or checksum mismatch) ones, each named with its reason in {@link Loaded#skipped()}.
   *
   * @throws StagecraftException (user) if the newest valid checkpoint belongs to another model or configuration
   */
  public Optional<Loaded> latestValid(String fingerprint) throws IOException {
    List<String> skipped = new ArrayList<>();
    for (Long step : steps()) {
      Loaded loaded;
      try {
        loaded = read(step, List.of());
      } catch (Invalid e) {
        skipped.add(e.getMessage());
        continue;
      }
      Manifest m = loaded.manifest();
      if (!m.fingerprint().equals(fingerprint)) {
        throw refusal(loaded.dir(), m.fingerprint(), fingerprint);
      }
      skipped.forEach(s -> LOG.warn("Skipped checkpoint {}", s));
      return Optional.of(new Loaded(loaded.dir(), m, loaded.files(), List.copyOf(skipped)));
    }
    skipped.forEach(s -> LOG.warn("Skipped checkpoint {}", s));
    return Optional.empty();
  }

  /**
   * Reads and verifies the checkpoint of {@code step} (the one {@link #latestValid} chose on another worker).
   *
   * @throws IOException if it is missing, incomplete or corrupt, or belongs to another fingerprint
   */
  public Loaded load(long step, String fingerprint) throws IOException {
    Loaded l;
    try {
      l = read(step, List.of());
    } catch (Invalid e) {
      throw new IOException("Cannot load checkpoint " + new Path(root, "step-" + step) + ": " + e.getMessage());
    }
    if (!l.manifest().fingerprint().equals(fingerprint)) {
      throw new IOException("Cannot load checkpoint " + l.dir() + ": fingerprint " + l.manifest().fingerprint()
          + ", expected " + fingerprint);
    }
    return l;
  }

  /**
   * Refuses, before any worker starts, a store whose newest checkpoint with a readable manifest belongs to another
   * model or configuration; reads manifests only. Returns how many checkpoints the store holds.
   *
   * @throws StagecraftException (user) naming the checkpoint and both fingerprints
   */
  public int requireCompatible(String fingerprint) throws IOException {
    List<Long> all = steps();
    for (Long step : all) {
      Path dir = new Path(root, "step-" + step);
      Optional<byte[]> bytes = AtomicFiles.read(fs, new Path(dir, MANIFEST));
      Manifest m;
      try {
        m = bytes.isEmpty() ? null : JSON.readValue(bytes.get(), Manifest.class);
      } catch (IOException e) {
        m = null;
      }
      if (m == null || m.fingerprint() == null) {
        continue;
      }
      if (!m.fingerprint().equals(fingerprint)) {
        throw refusal(fs.makeQualified(dir), m.fingerprint(), fingerprint);
      }
      break;
    }
    return all.size();
  }

  private static StagecraftException refusal(Path dir, String found, String expected) {
    return StagecraftException.user("Cannot resume from checkpoint %s: it was written for another model or "
        + "training configuration (fingerprint %s, expected %s); to discard it and start fresh, set "
        + "'checkpoint: { resume: fresh }' in the step", dir, found, expected);
  }

  /** Deletes every checkpoint newer than {@code step} (all for -1); returns how many. */
  public int discardAfter(long step) throws IOException {
    int n = 0;
    for (Long s : steps()) {
      if (s > step) {
        fs.delete(new Path(root, "step-" + s), true);
        n++;
      }
    }
    return n;
  }

  /** A checkpoint that cannot be used; the message says which and why, e.g. "step-30: incomplete (no manifest)". */
  private static final class Invalid extends Exception {
    private static final long serialVersionUID = 1L;

    Invalid(String message) {
      super(message, null, false, false);
    }
  }

  private Loaded read(long step, List<String> skipped) throws IOException, Invalid {
    Path dir = new Path(root, "step-" + step);
    Manifest m = manifest(step);
    Map<String, byte[]> files = new LinkedHashMap<>();
    for (Map.Entry<String, VerifiedFiles.Entry> f : m.files().entrySet()) {
      try {
        files.put(f.getKey(), VerifiedFiles.read(fs, dir, f.getKey(), f.getValue()));
      } catch (VerifiedFiles.Mismatch e) {
        throw new Invalid("step-" + step + ": corrupt (" + e.getMessage() + ")");
      }
    }
    return new Loaded(fs.makeQualified(dir), m, files, skipped);
  }

  /** The manifest of {@code step}'s checkpoint, read and checked (files not read). */
  private Manifest manifest(long step) throws IOException, Invalid {
    Path dir = new Path(root, "step-" + step);
    Optional<byte[]> bytes = AtomicFiles.read(fs, new Path(dir, MANIFEST));
    if (bytes.isEmpty()) {
      throw new Invalid("step-" + step + ": incomplete (no manifest)");
    }
    Manifest m;
    try {
      m = JSON.readValue(bytes.get(), Manifest.class);
    } catch (IOException e) {
      throw new Invalid("step-" + step + ": corrupt manifest (" + e.getMessage().lines().findFirst().orElse("")
          + ")");
    }
    if (m.formatVersion() != Manifest.FORMAT_VERSION || m.fingerprint() == null) {
      throw new Invalid("step-" + step + ": unsupported manifest (format version " + m.formatVersion()
          + ", expected " + Manifest.FORMAT_VERSION + ")");
    }
    return m;
  }

  /** Keeps the newest {@code keep} complete checkpoints; removes older complete and incomplete ones. */
  private void retain() throws IOException {
    int complete = 0;
    for (Long step : steps()) {
      Path dir = new Path(root, "step-" + step);
      boolean hasManifest = fs.exists(new Path(dir, MANIFEST));
      if (complete >= keep) {
        fs.delete(dir, true);
      } else if (hasManifest) {
        complete++;
      }
    }
  }

  /** Checkpoint step numbers, newest first. */
  private List<Long> steps() throws IOException {
    if (!fs.exists(root)) {
      return List.of();
    }
    List<Long> out = new ArrayList<>();
    for (FileStatus s : fs.listStatus(root)) {
      Matcher m = STEP_DIR.matcher(s.getPath().getName());
      if (s.isDirectory() && m.matches()) {
        out.add(Long.parseLong(m.group(1)));
      }
    }
    out.sort(Comparator.reverseOrder());
    return out;
  }
}
