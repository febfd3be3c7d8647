package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.Workspace;
import java.util.List;

/** What the engine tells the console (or a notebook) while it runs. Called from the engine's threads. */
public interface EngineListener {
  /**
   * @param toRun the steps this call will run, in order
   * @param kept steps that already succeeded in an earlier attempt of the run and are not run again
   */
  default void runStarted(String runId, Workspace workspace, List<String> toRun, List<String> kept) {}

  /** @param jobGroup the Spark job group of the step's jobs (for progress) */
  default void stepStarted(String stepId, String kind, int attempt, String jobGroup) {}

  /** The step's own report of how it is doing (e.g. a training step's epoch, loss and ETA). */
  default void stepProgress(String stepId, String status) {}

  default void stepFinished(String stepId, StepRecord record) {}

  default void runFinished(RunLedger ledger) {}

  EngineListener NONE = new EngineListener() {};
}
