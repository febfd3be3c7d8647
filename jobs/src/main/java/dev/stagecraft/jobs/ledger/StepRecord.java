package dev.stagecraft.jobs.ledger;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One step's entry in the ledger. Timestamps are ISO-8601 UTC strings.
 *
 * @param outputs committed outputs by name ({@code output}, {@code model}, …)
 * @param fingerprint hash of the step's substituted configuration when it last succeeded (resume re-runs a changed step)
 * @param details structured facts a step recorded about its last attempt (e.g. training attempts and the checkpoint
 *     each resumed from); kept when it fails
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record StepRecord(
    String kind,
    List<String> upstream,
    StepStatus status,
    int attempts,
    String started,
    String ended,
    Double seconds,
    Map<String, OutputRecord> outputs,
    Map<String, Double> metrics,
    String error,
    String errorCategory,
    String fingerprint,
    Map<String, Object> details) {

  public StepRecord {
    upstream = upstream == null ? List.of() : List.copyOf(upstream);
    outputs = outputs == null ? Map.of() : new LinkedHashMap<>(outputs);
    metrics = metrics == null ? Map.of() : new LinkedHashMap<>(metrics);
    details = details == null || details.isEmpty() ? null : new LinkedHashMap<>(details);
  }

  public static StepRecord pending(String kind, List<String> upstream) {
    return new StepRecord(kind, upstream, StepStatus.PENDING, 0, null, null, null, null, null, null, null, null, null);
  }

  /** Running a new attempt; what an earlier success committed is no longer the step's output. */
  public StepRecord started(String now) {
    return new StepRecord(
        kind, upstream, StepStatus.RUNNING, attempts + 1, now, null, null, null, null, null, null, null, null);
  }

  public StepRecord succeeded(
      String now, double secs, Map<String, OutputRecord> newOutputs, Map<String, Double> newMetrics,
      String newFingerprint, Map<String, Object> newDetails) {
    return new StepRecord(
        kind, upstream, StepStatus.SUCCEEDED, attempts, started, now, secs, newOutputs, newMetrics, null,
        null, newFingerprint, newDetails);
  }

  /** Failed: a failed attempt's outputs were never committed, so an earlier success's outputs are gone too. */
  public StepRecord failed(String now, double secs, String message, String category, Map<String, Object> newDetails) {
    return new StepRecord(
        kind, upstream, StepStatus.FAILED, attempts, started, now, secs, null, null, message, category, null,
        newDetails);
  }

  public StepRecord skipped(String reason) {
    return new StepRecord(
        kind, upstream, StepStatus.SKIPPED, attempts, null, null, null, null, null, reason, null, null, null);
  }

  public StepRecord reset() {
    return new StepRecord(kind, upstream, StepStatus.PENDING, attempts, null, null, null, null, null, null, null, null,
        null);
  }

  /** Same state, with one more detail (replacing one of that name). */
  public StepRecord withDetail(String name, Object value) {
    Map<String, Object> d = details == null ? new LinkedHashMap<>() : new LinkedHashMap<>(details);
    d.put(name, value);
    return new StepRecord(kind, upstream, status, attempts, started, ended, seconds, outputs, metrics, error,
        errorCategory, fingerprint, d);
  }

  /** Same state, with the workflow's current kind and upstream steps (resume after an edit of the workflow). */
  public StepRecord withShape(String newKind, List<String> newUpstream) {
    return new StepRecord(newKind, newUpstream, status, attempts, started, ended, seconds, outputs, metrics,
        error, errorCategory, fingerprint, details);
  }
}
