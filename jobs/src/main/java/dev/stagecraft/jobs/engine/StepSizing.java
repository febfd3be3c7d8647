package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.policies.cost.PriceCatalog;
import dev.stagecraft.policies.sched.JobTraces;
import dev.stagecraft.policies.sched.Replay;
import dev.stagecraft.policies.sched.SpotTrace;
import dev.stagecraft.policies.sizing.RightSizer;
import dev.stagecraft.policies.sizing.Schedule;
import dev.stagecraft.policies.sizing.SizingDecision;
import dev.stagecraft.policies.sizing.SizingRequest;
import dev.stagecraft.policies.sizing.StepObservation;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepKind;
import java.io.IOException;
import java.io.InputStream;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The engine's side of {@code deadline}, {@code budget} and {@code sizing: auto}: a step's effective deadline when it
 * starts, the history of the same workflow's earlier runs in the workspace (ledgers and cost reports), and the policy
 * {@link RightSizer} chooses from them. The decision logic itself lives in {@code resource-policies}.
 */
final class StepSizing {
  private static final Logger LOG = LoggerFactory.getLogger(StepSizing.class);

  /** Newest earlier runs of the same workflow read for history (by the run folder's modification time). */
  static final int HISTORY_RUNS = 20;
  /**
   * Most ledgers read while looking for them, newest first: bounds the time a workspace shared by many workflows can
   * cost a step's start.
   */
  static final int MAX_LEDGERS_READ = 500;
  /** Deadlines are met with this much to spare: expected time × margin ≤ deadline. */
  static final double SAFETY_MARGIN = 1.25;
  /** Time to get replacement executors after a preemption (as in the simulator). */
  static final double RESTART_SECONDS = 120;

  private static volatile RightSizer.SpotRisk risk;

  private StepSizing() {}

  /** A step's deadline in seconds from {@code stepStart}: its own, or what is left of the workflow's, the sooner. */
  static Optional<Double> deadlineSeconds(WorkflowSpec spec, String step, String runCreated, Instant stepStart) {
    Optional<Double> own = spec.stepSchedule(step).deadline().map(d -> d.secondsFrom(stepStart));
    // the workflow's deadline counts from the run's creation (a resumed run keeps its deadline)
    Optional<Double> run = spec.schedule().deadline().map(d -> {
      Instant runStart = runCreated == null ? stepStart : Instant.parse(runCreated);
      return (d.dueFrom(runStart).toEpochMilli() - stepStart.toEpochMilli()) / 1000.0;
    });
    if (own.isPresent() && run.isPresent()) {
      return Optional.of(Math.min(own.get(), run.get()));
    }
    return own.or(() -> run);
  }

  /** The policy the step runs under, with the decision to record; empty when the step names no policy. */
  static Optional<SizingDecision> decide(WorkflowSpec spec, StepKind kind, StepConfig step, Workspace ws,
      RunLedger ledger, Optional<Double> deadline) {
    String runId = ledger.runId();
    Optional<ResourcePolicy> policy = spec.policyOf(step);
    Schedule schedule = spec.stepSchedule(step.id()).orElse(spec.schedule());
    if (policy.isEmpty() || !schedule.autoSizing()) {
      return Optional.empty();
    }
    History history = history(ws, spec.name(), step.id(), runId);
    SizingDecision d;
    if (history.runs().isEmpty()) {
      d = RightSizer.asWritten(step.id(), policy.get(), "no earlier succeeded run of workflow '" + spec.name()
          + "' with step '" + step.id() + "' and a cost report in " + ws.uri() + ": policy '" + policy.get().name()
          + "' as written");
    } else {
      // What the kind says of the step; measured traits come from the newest earlier run's metrics.
      d = new RightSizer(PriceCatalog.builtIn(), spotRisk(), SAFETY_MARGIN).decide(new SizingRequest(step.id(),
          step.kind(), kind.sizing(step, history.newestMetrics()), policy.get(), deadline, schedule.budget(),
          history.runs(), inputRows(ledger, ledger.step(step.id()).upstream())));
    }
    if (!d.policy().equals(policy.get())) {
      // its own name: profiles (and the cost meter's prices by profile) are made once per policy name
      ResourcePolicy p = d.policy();
      d = new SizingDecision(d.step(), d.fromHistory(), new ResourcePolicy(p.name() + "@auto:" + step.id(),
          p.executor(), p.task(), p.allocation(), p.market(), p.pool(), p.priority(), p.rapids(), p.collectives()),
          d.executors(),
          d.taskGpus(), d.market(), d.reason(), d.numbers());
    }
    LOG.info("Sizing of step '{}' ({}): {}", step.id(), d.fromHistory() ? "auto" : "policy as written", d.reason());
    return Optional.of(d);
  }

  /**
   * How long the step took as the run saw it. A step run as its own application records the time inside that
   * application; the launching run adds the application's whole life (spark-submit, start-up, executors), which is
   * what a deadline has to allow for.
   */
  static double observedSeconds(StepRecord r) {
    double seconds = r.seconds() == null ? 0 : r.seconds();
    if (r.details() != null && r.details().get("application") instanceof Map<?, ?> app
        && app.get("seconds") instanceof Number launched) {
      return Math.max(seconds, launched.doubleValue());
    }
    return seconds;
  }

  /**
   * What earlier runs say of a step.
   *
   * @param runs its succeeded runs in runs of the same workflow, newest first
   * @param newestMetrics the step's metrics in the newest of them (empty if there is none)
   */
  record History(List<StepObservation> runs, Map<String, Double> newestMetrics) {}

  private record Found(String ended, StepObservation observation, Map<String, Double> metrics) {}

  /** The step's history in the workspace: each ledger and cost report read once. */
  static History history(Workspace ws, String workflow, String stepId, String currentRun) {
    Path runs = new Path(ws.root(), "runs");
    FileStatus[] dirs;
    try {
      if (!ws.fs().exists(runs)) {
        return new History(List.of(), Map.of());
      }
      dirs = ws.fs().listStatus(runs);
    } catch (IOException e) {
      LOG.warn("Cannot list earlier runs in {} for sizing: {}", runs, e.toString());
      return new History(List.of(), Map.of());
    }
    Arrays.sort(dirs, Comparator.comparingLong(FileStatus::getModificationTime).reversed());
    LedgerStore store = new LedgerStore(ws);
    List<Found> found = new ArrayList<>();
    int read = 0;
    int sameWorkflow = 0;
    for (FileStatus dir : dirs) {
      String runId = dir.getPath().getName();
      if (!dir.isDirectory() || runId.equals(currentRun)) {
        continue;
      }
      if (sameWorkflow >= HISTORY_RUNS || read++ >= MAX_LEDGERS_READ) {
        break;
      }
      try {
        Optional<RunLedger> ledger = store.read(runId);
        if (ledger.isEmpty() || !workflow.equals(ledger.get().workflow())) {
          continue; // another workflow's run: not counted
        }
        sameWorkflow++;
        StepRecord r = ledger.get().steps().get(stepId);
        if (r == null || r.status() != StepStatus.SUCCEEDED || r.seconds() == null || r.ended() == null) {
          continue;
        }
        Optional<CostReport> cost = CostFiles.read(ws, runId);
        CostReport.Line line = cost.map(c -> c.steps().get(stepId)).orElse(null);
        if (line == null) {
          continue;
        }
        double work = r.outputs().values().stream().filter(OutputRecord::isTable).findFirst()
            .map(o -> o.rows() == null ? 0.0 : o.rows().doubleValue())
            .orElse(r.metrics().getOrDefault("rows", 0.0));
        found.add(new Found(r.ended(), new StepObservation(runId, Math.max(observedSeconds(r), 1e-3),
            line.busySeconds(), line.idleSeconds(), line.taskSeconds(), work, inputRows(ledger.get(), r.upstream()),
            Optional.ofNullable(line.gpuUtilisation()), recordedDeadline(r)), r.metrics()));
      } catch (RuntimeException e) {
        LOG.warn("Skipping run '{}' as sizing history: {}", runId, e.getMessage());
      }
    }
    found.sort(Comparator.comparing(Found::ended).reversed());
    return new History(found.stream().map(Found::observation).toList(),
        found.isEmpty() ? Map.of() : found.get(0).metrics());
  }

  /** Rows of the tables the given steps wrote in a run (0 when none recorded a row count). */
  static double inputRows(RunLedger ledger, List<String> upstream) {
    double rows = 0;
    for (String u : upstream) {
      StepRecord r = ledger.steps().get(u);
      if (r != null) {
        for (OutputRecord o : r.outputs().values()) {
          rows += o.isTable() && o.rows() != null ? o.rows() : 0;
        }
      }
    }
    return rows;
  }

  private static Optional<Double> recordedDeadline(StepRecord r) {
    if (r.details() != null && r.details().get("deadline") instanceof Map<?, ?> d
        && d.get("deadline_seconds") instanceof Number n) {
      return Optional.of(n.doubleValue());
    }
    return Optional.empty();
  }

  /** What the ledger records about a step's deadline once it ended. */
  static Map<String, Object> deadlineOutcome(double deadlineSeconds, double seconds) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("deadline_seconds", Math.round(deadlineSeconds * 1000) / 1000.0);
    m.put("seconds", Math.round(seconds * 1000) / 1000.0);
    m.put("met", seconds <= deadlineSeconds);
    return m;
  }

  /** Spot risk from the built-in AWS availability traces: the mean time between losses over both zones. */
  static RightSizer.SpotRisk spotRisk() {
    RightSizer.SpotRisk r = risk;
    if (r == null) {
      double up = 0;
      double losses = 0;
      for (String name : Replay.DEFAULT_SPOT) {
        try (InputStream in = JobTraces.resource(name)) {
          SpotTrace t = SpotTrace.read(in, name);
          double mtbp = t.meanSecondsBetweenPreemptions();
          double upSeconds = t.availableShare() * t.lengthSeconds();
          up += upSeconds;
          losses += mtbp > 0 && !Double.isInfinite(mtbp) ? upSeconds / mtbp : 0;
        } catch (IOException e) {
          throw new IllegalStateException("Cannot read the built-in spot trace " + name, e);
        }
      }
      r = new RightSizer.SpotRisk(losses > 0 ? up / losses : Double.POSITIVE_INFINITY, RESTART_SECONDS);
      risk = r;
    }
    return r;
  }
}
