package dev.stagecraft.training.checkpoint;

import static java.util.Objects.requireNonNull;

import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@link Checkpointing} of the rank that saves (rank 0): decides when a checkpoint is due (by steps and/or time),
 * takes the snapshot and hands it to a {@link CheckpointWriter}. When the previous upload is still running, policy
 * {@code wait} waits for it; policy {@code skip} defers the save (no copy is made) and takes it at the first step
 * after the upload finished, so the gap between checkpoints grows only by the upload time. The last step is always
 * saved, so a run that dies after training (while evaluating, say) resumes without training again.
 */
public final class Checkpointer implements Checkpointing, AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Checkpointer.class);

  private final CheckpointPolicy policy;
  private final CheckpointWriter writer;
  private long lastStep;
  private long lastNanos = System.nanoTime();
  private boolean deferring;

  /** @param startStep the step training starts after (0, or the checkpoint it resumed from) */
  public Checkpointer(CheckpointPolicy policy, CheckpointWriter writer, long startStep) {
    this.policy = requireNonNull(policy, "policy is null");
    this.writer = requireNonNull(writer, "writer is null");
    this.lastStep = startStep;
  }

  @Override
  public void afterStep(long step, Supplier<TrainingState> snapshot) {
    long now = System.nanoTime();
    if (!policy.due(step, lastStep, now - lastNanos)) {
      return;
    }
    if (policy.whenBusy() == CheckpointPolicy.WhenBusy.SKIP && writer.busy()) {
      if (!deferring) {
        deferring = true;
        writer.noteSkipped(step);
      }
      return;
    }
    writer.submit(snapshot.get());
    deferring = false;
    lastStep = step;
    lastNanos = System.nanoTime();
  }

  @Override
  public void end(long step, Supplier<TrainingState> snapshot) {
    // Not when nothing ran since the start (a resume from the last step): rewriting that checkpoint would delete a
    // complete one before its replacement exists.
    if (step != lastStep && writer.lastSubmittedStep() != step) {
      writer.submit(snapshot.get());
    }
    writer.flush();
    LOG.debug("Checkpoints: {}", writer.stats());
  }

  public CheckpointWriter.Stats stats() {
    return writer.stats();
  }

  @Override
  public void close() {
    writer.close();
  }
}
