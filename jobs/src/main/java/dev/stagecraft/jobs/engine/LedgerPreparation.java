package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.Json;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The ledger at the start of an engine call: a new run's, or an existing run's brought up to date with the workflow
 * (its steps' kinds and dependencies, the params, {@code --set}), with every step a whole run will run again reset to
 * PENDING — which is what resume means.
 */
final class LedgerPreparation {
  private static final Logger LOG = LoggerFactory.getLogger(LedgerPreparation.class);

  private LedgerPreparation() {}

  /**
   * Creates or updates the ledger for this call and returns it.
   *
   * @throws StagecraftException (user) if the run exists and is neither resumed nor run a step at a time, does not
   *     exist but is resumed, belongs to another workflow, or (one step) an upstream step has not succeeded
   */
  static RunLedger prepare(WorkflowSpec spec, Engine.Options options, Workspace ws, LedgerStore store) {
    String runId = options.runId();
    String now = RunLedger.now();
    return store.update(runId, current -> {
      if (current == null) {
        if (options.resume()) {
          throw StagecraftException.user("Cannot resume run '%s': it has no ledger in workspace %s (drop --resume to "
              + "start it)", runId, ws.uri());
        }
      } else if (options.onlyStep().isEmpty() && !options.resume()) {
        long done = current.steps().values().stream().filter(r -> r.status() == StepStatus.SUCCEEDED).count();
        throw StagecraftException.user("Cannot start run '%s': it already exists in workspace %s (%s, %d of %d steps "
            + "succeeded). Add --resume to re-run the steps that did not succeed, or choose another --run-id.",
            runId, ws.uri(), current.status(), done, current.steps().size());
      } else if (!current.workflow().equals(spec.name())) {
        throw StagecraftException.user("Cannot continue run '%s': it belongs to workflow '%s', not '%s' (%s)", runId,
            current.workflow(), spec.name(), spec.source());
      }
      Map<String, String> params = effectiveParams(spec, current, options);
      Map<String, StepRecord> steps = new LinkedHashMap<>();
      for (StepConfig s : spec.steps()) {
        List<String> up = List.copyOf(spec.upstream().get(s.id()));
        StepRecord old = current == null ? null : current.steps().get(s.id());
        steps.put(s.id(), old == null ? StepRecord.pending(s.kind(), up) : old.withShape(s.kind(), up));
      }
      RunLedger base = current != null
          ? current.withParams(params, now).withSteps(steps, now)
          : new RunLedger(RunLedger.CURRENT_VERSION, runId, spec.name(), spec.source(), ws.uri(), RunStatus.RUNNING,
              now, now, params, steps);
      if (options.onlyStep().isPresent()) {
        String step = options.onlyStep().get();
        for (String up : spec.allUpstream(step)) {
          StepRecord r = base.step(up);
          if (r.status() != StepStatus.SUCCEEDED) {
            throw StagecraftException.user("Cannot run step '%s' of run '%s': upstream step '%s' is %s (expected "
                + "SUCCEEDED; run it first)", step, runId, up, r.status());
          }
        }
        return base.withStatus(RunStatus.RUNNING, now);
      }
      // A whole run: anything not kept goes back to PENDING so the ledger shows what is left to do.
      Set<String> rerun = new LinkedHashSet<>(stepsToRerun(spec, base, params, ws));
      Map<String, StepRecord> reset = new LinkedHashMap<>();
      base.steps().forEach((id, r) -> reset.put(id, rerun.contains(id) ? r.reset() : r));
      return base.withSteps(reset, now).withStatus(RunStatus.RUNNING, now);
    });
  }

  /** The steps a whole run still has to run, as the (prepared) ledger says. */
  static List<String> notSucceeded(WorkflowSpec spec, RunLedger ledger) {
    List<String> out = new ArrayList<>();
    for (String id : spec.order()) {
      if (ledger.step(id).status() != StepStatus.SUCCEEDED) {
        out.add(id);
      }
    }
    return out;
  }

  /**
   * A hash of the step's substituted configuration: what a succeeded step records, and resume compares to tell a
   * changed step.
   */
  static String fingerprint(StepConfig resolved) {
    try {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      md.update(resolved.kind().getBytes(StandardCharsets.UTF_8));
      md.update(Json.MAPPER.writeValueAsBytes(sorted(resolved.fields())));
      return HexFormat.of().formatHex(md.digest()).substring(0, 16);
    } catch (NoSuchAlgorithmException | IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * Steps to run again: every step that did not succeed, that changed since it succeeded (its substituted
   * configuration has another fingerprint), whose committed outputs are gone, or whose upstream step runs again.
   */
  private static List<String> stepsToRerun(WorkflowSpec spec, RunLedger ledger, Map<String, String> params,
      Workspace ws) {
    List<String> out = new ArrayList<>();
    Set<String> rerun = new LinkedHashSet<>();
    for (String id : spec.order()) {
      StepRecord r = ledger.step(id);
      String reason = null;
      if (r.status() != StepStatus.SUCCEEDED) {
        reason = "";
      } else if (spec.upstream().get(id).stream().anyMatch(rerun::contains)) {
        reason = "an upstream step runs again";
      } else if (!outputsExist(ws, r)) {
        reason = "its committed output is gone";
      } else {
        StepConfig resolved = StepTemplates.resolve(spec, spec.step(id), ledger, params, ws, ledger.runId());
        if (!fingerprint(resolved).equals(r.fingerprint())) {
          reason = "its configuration changed since it succeeded";
        }
      }
      if (reason != null) {
        if (!reason.isEmpty()) {
          LOG.info("Step '{}' succeeded before but runs again: {}", id, reason);
        }
        rerun.add(id);
        out.add(id);
      }
    }
    return out;
  }

  private static boolean outputsExist(Workspace ws, StepRecord r) {
    try {
      for (OutputRecord o : r.outputs().values()) {
        if (!ws.fs().exists(new Path(o.uri()))) {
          return false;
        }
      }
      return true;
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot check outputs in workspace %s: %s", ws.uri(), e.getMessage());
    }
  }

  /** Workflow params, then those recorded by earlier calls of this run, then {@code --set}. */
  private static Map<String, String> effectiveParams(WorkflowSpec spec, RunLedger current, Engine.Options options) {
    Map<String, String> params = new LinkedHashMap<>(spec.params());
    if (current != null) {
      current.params().forEach((k, v) -> {
        if (params.containsKey(k)) {
          params.put(k, v);
        }
      });
    }
    for (Map.Entry<String, String> e : options.overrides().entrySet()) {
      if (!spec.params().containsKey(e.getKey())) {
        throw StagecraftException.user("Invalid --set %s=%s: %s has no parameter '%s' (expected one of: %s)",
            e.getKey(), e.getValue(), spec.source(), e.getKey(), String.join(", ", new TreeSet<>(spec.params().keySet())));
      }
      params.put(e.getKey(), e.getValue());
    }
    return params;
  }

  /** {@code v} with every map's keys sorted (as strings), at any depth: the same configuration, the same bytes. */
  @SuppressWarnings("unchecked")
  private static Object sorted(Object v) {
    if (v instanceof Map<?, ?> m) {
      Map<String, Object> out = new TreeMap<>();
      ((Map<Object, Object>) m).forEach((k, x) -> out.put(String.valueOf(k), sorted(x)));
      return out;
    }
    if (v instanceof List<?> l) {
      return l.stream().map(LedgerPreparation::sorted).toList();
    }
    return v;
  }
}
