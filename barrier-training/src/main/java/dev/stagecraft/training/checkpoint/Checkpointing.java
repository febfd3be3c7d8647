package dev.stagecraft.training.checkpoint;

import java.util.function.Supplier;

/**
 * What a training loop calls after every step, with a way to copy its state: a checkpointer calls {@code snapshot}
 * only when it saves (training pauses just for the copy) and uploads in the background. {@link #end} comes once,
 * after the last step, and returns when everything handed over is written.
 */
public interface Checkpointing {
  Checkpointing NONE = new Checkpointing() {
    @Override
    public void afterStep(long step, Supplier<TrainingState> snapshot) {}

    @Override
    public void end(long step, Supplier<TrainingState> snapshot) {}
  };

  void afterStep(long step, Supplier<TrainingState> snapshot);

  void end(long step, Supplier<TrainingState> snapshot);
}
