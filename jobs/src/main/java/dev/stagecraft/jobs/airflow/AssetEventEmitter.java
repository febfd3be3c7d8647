package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import java.io.PrintStream;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Tells Airflow when a step's outputs are committed: one asset event per output, on the asset an exported DAG declares
 * for it ({@link DagExporter#assetUri}), with the run id and the output's URI as the event's extra. DAGs scheduled on
 * those assets then run even when the workflow ran outside Airflow (spark-submit, cron).
 *
 * <p>Wraps the console's listener. A failed event never fails the step (its output is committed already): it is
 * reported as one warning line.
 */
public final class AssetEventEmitter implements EngineListener {
  private final EngineListener delegate;
  private final Supplier<AirflowClient> client;
  private final String workflowName;
  private final PrintStream warnings;
  private volatile String runId = "";
  private AirflowClient made; // guarded by this

  /** @param client made on first use, so a run with no committed output never logs in */
  public AssetEventEmitter(EngineListener delegate, Supplier<AirflowClient> client, String workflowName,
      PrintStream warnings) {
    this.delegate = requireNonNull(delegate, "delegate is null");
    this.client = requireNonNull(client, "client is null");
    this.workflowName = requireNonNull(workflowName, "workflowName is null");
    this.warnings = requireNonNull(warnings, "warnings is null");
  }

  @Override
  public void runStarted(String runId, Workspace workspace, List<String> toRun, List<String> kept) {
    this.runId = runId;
    delegate.runStarted(runId, workspace, toRun, kept);
  }

  @Override
  public void stepStarted(String stepId, String kind, int attempt, String jobGroup) {
    delegate.stepStarted(stepId, kind, attempt, jobGroup);
  }

  @Override
  public void stepProgress(String stepId, String status) {
    delegate.stepProgress(stepId, status);
  }

  @Override
  public void stepFinished(String stepId, StepRecord record) {
    delegate.stepFinished(stepId, record);
    if (record.status() != StepStatus.SUCCEEDED) {
      return;
    }
    for (Map.Entry<String, OutputRecord> o : record.outputs().entrySet()) {
      String asset = DagExporter.assetUri(workflowName, stepId, o.getKey());
      try {
        client().createAssetEvent(asset, Map.of("stagecraft_run_id", runId, "uri", o.getValue().uri()));
      } catch (RuntimeException e) {
        warnings.println("stagecraft: warning: no Airflow asset event for " + asset + ": " + e.getMessage());
      }
    }
  }

  @Override
  public void runFinished(RunLedger ledger) {
    delegate.runFinished(ledger);
  }

  private synchronized AirflowClient client() {
    if (made == null) {
      made = client.get();
    }
    return made;
  }
}
