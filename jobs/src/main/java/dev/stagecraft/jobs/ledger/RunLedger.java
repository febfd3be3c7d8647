package dev.stagecraft.jobs.ledger;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonInclude;
import java.time.Instant;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * The durable state of one run: the newest generation of {@code runs/RUN-ID/ledger/} (see {@link LedgerStore}).
 *
 * @param steps step id → record, in workflow order
 * @param fences lease name → the newest lease epoch that wrote this ledger ({@link Fence})
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record RunLedger(
    int version,
    String runId,
    String workflow,
    String workflowFile,
    String workspace,
    RunStatus status,
    String created,
    String updated,
    Map<String, String> params,
    Map<String, StepRecord> steps,
    Map<String, Long> fences) {

  public static final int CURRENT_VERSION = 1;

  /** This instant as a ledger records times ({@code created}, {@code updated}, steps' times): ISO-8601, in UTC. */
  public static String now() {
    return Instant.now().toString();
  }

  @JsonCreator
  public RunLedger {
    params = params == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(params));
    steps = steps == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(steps));
    fences = fences == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(fences));
  }

  /** A ledger no lease has written yet. */
  public RunLedger(int version, String runId, String workflow, String workflowFile, String workspace,
      RunStatus status, String created, String updated, Map<String, String> params, Map<String, StepRecord> steps) {
    this(version, runId, workflow, workflowFile, workspace, status, created, updated, params, steps, Map.of());
  }

  public StepRecord step(String id) {
    StepRecord r = steps.get(id);
    if (r == null) {
      throw new IllegalArgumentException("ledger of run " + runId + " has no step " + id);
    }
    return r;
  }

  public RunLedger withStep(String id, UnaryOperator<StepRecord> change, String now) {
    Map<String, StepRecord> copy = new LinkedHashMap<>(steps);
    copy.put(id, change.apply(step(id)));
    return new RunLedger(version, runId, workflow, workflowFile, workspace, status, created, now, params, copy, fences);
  }

  public RunLedger withSteps(Map<String, StepRecord> newSteps, String now) {
    return new RunLedger(version, runId, workflow, workflowFile, workspace, status, created, now, params, newSteps, fences);
  }

  public RunLedger withStatus(RunStatus newStatus, String now) {
    return new RunLedger(version, runId, workflow, workflowFile, workspace, newStatus, created, now, params, steps, fences);
  }

  public RunLedger withParams(Map<String, String> newParams, String now) {
    return new RunLedger(version, runId, workflow, workflowFile, workspace, status, created, now, newParams, steps, fences);
  }

  public RunLedger withFences(Map<String, Long> newFences) {
    return new RunLedger(version, runId, workflow, workflowFile, workspace, status, created, updated, params, steps,
        newFences);
  }

  /** The run's status as its steps say: running if any runs, failed if any failed, succeeded if all did. */
  public RunStatus statusFromSteps() {
    boolean running = false;
    boolean failed = false;
    boolean all = true;
    for (StepRecord r : steps.values()) {
      running |= r.status() == StepStatus.RUNNING;
      failed |= r.status() == StepStatus.FAILED || r.status() == StepStatus.SKIPPED;
      all &= r.status() == StepStatus.SUCCEEDED;
    }
    if (running) {
      return RunStatus.RUNNING;
    }
    if (failed) {
      return RunStatus.FAILED;
    }
    return all ? RunStatus.SUCCEEDED : RunStatus.INCOMPLETE;
  }
}
