package dev.stagecraft.training.pipeline;

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.fs.VerifiedFiles;
import dev.stagecraft.training.checkpoint.CheckpointPolicy;
import dev.stagecraft.training.checkpoint.CheckpointStore;
import dev.stagecraft.training.checkpoint.TrainingState;
import dev.stagecraft.training.collective.Communicator;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Checkpoints of a pipeline: one shard per stage, written by the stage's first replica ({@code stage-<s>-…}: the
 * stage's parameters, optimizer state, and the loop's position and loss curve, which every stage knows), and one
 * manifest, written by rank 0 last, once every shard is written, listing every shard's files with their checksums.
 * A resume therefore restores every stage at one step, or none.
 *
 * <p>Collective over the world: every rank calls {@link #resume}, {@link #afterStep} and {@link #end} at the same
 * points. A checkpoint is due on every rank at once: by step count, or, for {@code every_seconds}, as rank 0's clock
 * says (its decision is broadcast each step). Writes are synchronous: the stages pause while their shards are written
 * (the data-parallel loop's background writer has no counterpart here yet). A shard that fails to write leaves that
 * checkpoint without a manifest; training continues and the failure is counted and reported.
 */
public final class PipelineCheckpoints {
  private static final Logger LOG = LoggerFactory.getLogger(PipelineCheckpoints.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String FAILED = "!";

  private final Communicator world;
  private final CheckpointStore store;
  private final CheckpointPolicy policy;
  private final String fingerprint;
  private final int stage;
  private final boolean writesShard;
  private final Consumer<String> events;
  private long lastStep;
  private long lastNanos = System.nanoTime();
  private int written;
  private int failed;
  private long bytes;
  private long pauseNanos;

  /**
   * @param stage this rank's stage; {@code replica} its replica (replica 0 writes the stage's shard)
   * @param events receives a line for each failed checkpoint, on rank 0 (progress)
   */
  public PipelineCheckpoints(Communicator world, CheckpointStore store, CheckpointPolicy policy, String fingerprint,
      int stage, int replica, Consumer<String> events) {
    this.world = requireNonNull(world, "world is null");
    this.store = requireNonNull(store, "store is null");
    this.policy = requireNonNull(policy, "policy is null");
    this.fingerprint = requireNonNull(fingerprint, "fingerprint is null");
    this.stage = stage;
    this.writesShard = replica == 0;
    this.events = requireNonNull(events, "events is null");
  }

  /** The checkpoints' figures, meaningful on rank 0 (which publishes them). */
  public record Stats(int written, int failed, long bytes, double pauseSeconds) {}

  public Stats stats() {
    return new Stats(written, failed, bytes, pauseNanos / 1e9);
  }

  /**
   * Agrees on the newest checkpoint every stage can read: rank 0 proposes the newest complete one, every rank reads
   * and verifies its stage's shard, and a checkpoint any stage cannot use is deleted (its reason logged) and the next
   * older one proposed. Returns this stage's state, or null to start fresh.
   *
   * @param onResume told, on rank 0, the step and folder resumed from
   */
  public TrainingState resume(Consumer<String> onResume) throws IOException {
    List<Long> candidates = new ArrayList<>();
    String refusal = "";
    if (world.rank() == 0) {
      try {
        candidates.addAll(store.completeSteps(fingerprint));
      } catch (RuntimeException e) {
        refusal = String.valueOf(e.getMessage()); // another configuration's checkpoint: every rank fails alike
      }
    }
    String agreedRefusal = new String(world.allGather(refusal.getBytes(StandardCharsets.UTF_8)).get(0),
        StandardCharsets.UTF_8);
    if (!agreedRefusal.isEmpty()) {
      throw dev.stagecraft.spi.StagecraftException.user("%s", agreedRefusal);
    }
    for (int i = 0; ; i++) {
      long proposed = world.rank() == 0 ? (i < candidates.size() ? candidates.get(i) : -1) : 0;
      byte[] mine = world.rank() == 0 ? ByteBuffer.allocate(Long.BYTES).putLong(proposed).array() : new byte[0];
      proposed = ByteBuffer.wrap(world.allGather(mine).get(0)).getLong();
      if (proposed < 0) {
        dropNewerThan(-1);
        return null;
      }
      TrainingState state = null;
      String problem = "";
      try {
        state = TrainingState.fromFiles(store.readShard(proposed, fingerprint, prefix(stage)));
        if (state.globalStep() != proposed) {
          problem = "its stage " + stage + " shard is of step " + state.globalStep();
        }
      } catch (IOException e) {
        problem = "stage " + stage + ": " + e.getMessage();
      }
      List<byte[]> verdicts = world.allGather(problem.getBytes(StandardCharsets.UTF_8));
      List<String> problems = new ArrayList<>();
      for (byte[] v : verdicts) {
        if (v.length > 0) {
          problems.add(new String(v, StandardCharsets.UTF_8));
        }
      }
      if (problems.isEmpty()) {
        dropNewerThan(proposed);
        lastStep = proposed;
        if (world.rank() == 0) {
          LOG.info("Resuming every stage from checkpoint step-{} under {}", proposed, store.root());
          onResume.accept(proposed + " (" + store.root() + "/step-" + proposed + ")");
        }
        return state;
      }
      if (world.rank() == 0) {
        LOG.warn("Checkpoint step-{} under {} cannot be used, deleting it: {}", proposed, store.root(),
            String.join("; ", problems.stream().distinct().toList()));
        store.discard(proposed);
      }
    }
  }

  /** Saves a checkpoint after {@code step} when one is due. */
  public void afterStep(long step, Supplier<TrainingState> snapshot) {
    boolean due = policy.due(step, lastStep, System.nanoTime() - lastNanos);
    if (policy.everySeconds() > 0) {
      float[] decision = {due ? 1 : 0};
      world.broadcast(decision, 0); // rank 0's clock decides for everyone
      due = decision[0] > 0;
    }
    if (due) {
      save(step, snapshot);
    }
  }

  /** Saves the final state, unless the last checkpoint is of this step already. */
  public void end(long step, Supplier<TrainingState> snapshot) {
    if (step != lastStep) {
      save(step, snapshot);
    }
  }

  private void save(long step, Supplier<TrainingState> snapshot) {
    long t0 = System.nanoTime();
    String report = "";
    if (writesShard) {
      try {
        Map<String, byte[]> files = new LinkedHashMap<>();
        snapshot.get().toFiles().forEach((name, data) -> files.put(prefix(stage) + name, data));
        Map<String, VerifiedFiles.Entry> entries = store.writeShard(step, files);
        report = JSON.writeValueAsString(entries);
      } catch (IOException | RuntimeException e) {
        report = FAILED + "stage " + stage + ": " + e.getMessage();
      }
    }
    List<byte[]> reports = world.allGather(report.getBytes(StandardCharsets.UTF_8));
    if (world.rank() == 0) {
      publish(step, snapshot.get().epoch(), reports);
    }
    lastStep = step;
    lastNanos = System.nanoTime();
    pauseNanos += lastNanos - t0;
  }

  /** Rank 0: the manifest over every shard, or the failure. */
  private void publish(long step, int epoch, List<byte[]> reports) {
    Map<String, VerifiedFiles.Entry> all = new LinkedHashMap<>();
    List<String> failures = new ArrayList<>();
    for (byte[] r : reports) {
      String s = new String(r, StandardCharsets.UTF_8);
      if (s.startsWith(FAILED)) {
        failures.add(s.substring(1));
      } else if (!s.isEmpty()) {
        try {
          all.putAll(JSON.readValue(s, new TypeReference<Map<String, VerifiedFiles.Entry>>() {}));
        } catch (IOException e) {
          failures.add("unreadable shard report: " + e.getMessage());
        }
      }
    }
    if (failures.isEmpty()) {
      try {
        store.commitShards(step, epoch, fingerprint, all);
        written++;
        bytes += all.values().stream().mapToLong(VerifiedFiles.Entry::bytes).sum();
        LOG.info("Checkpoint step-{} written: {} files of {} stage shard(s) under {}", step, all.size(),
            reports.stream().filter(r -> r.length > 0).count(), store.root());
        return;
      } catch (IOException | RuntimeException e) {
        failures.add("manifest: " + e.getMessage());
      }
    }
    failed++;
    String why = String.join("; ", failures);
    LOG.warn("Cannot write the checkpoint of step {} under {}: {}; training continues", step, store.root(), why);
    events.accept(dev.stagecraft.training.checkpoint.CheckpointWriter.EVENT_PREFIX + step + " failed (" + why
        + "); training continues");
  }

  private void dropNewerThan(long step) throws IOException {
    if (world.rank() == 0) {
      int dropped = store.discardAfter(step);
      if (dropped > 0) {
        LOG.info("Deleted {} unusable checkpoint(s) newer than step {} under {}", dropped, step, store.root());
      }
    }
  }

  static String prefix(int stage) {
    return "stage-" + stage + "-";
  }
}
