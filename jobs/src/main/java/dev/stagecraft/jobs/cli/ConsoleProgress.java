package dev.stagecraft.jobs.cli;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.spark.SparkJobInfo;
import org.apache.spark.SparkStageInfo;
import org.apache.spark.SparkStatusTracker;

/**
 * Live progress of running steps on the console: step, Spark stage, tasks done/total, elapsed time and an estimate of
 * the stage's remaining time. On a terminal one line is rewritten in place; otherwise (a log file, Airflow) a plain line
 * is printed when a stage starts or ends and at most every {@value #PLAIN_EVERY_MS} ms while one runs.
 */
public final class ConsoleProgress implements EngineListener, AutoCloseable {
  private static final long PLAIN_EVERY_MS = 10_000;

  private record Active(String kind, String group, long startNanos, long[] lastPrint) {}

  private final SparkStatusTracker tracker;
  private final PrintStream out;
  private final boolean terminal;
  private final Map<String, Active> active = new ConcurrentHashMap<>();
  private final Map<String, String> lastStage = new ConcurrentHashMap<>();
  private final Map<String, String> status = new ConcurrentHashMap<>();
  private final ScheduledExecutorService ticker;
  private int lastWidth;

  public ConsoleProgress(SparkStatusTracker tracker, PrintStream out, boolean terminal) {
    this.tracker = tracker;
    this.out = out;
    this.terminal = terminal;
    this.ticker = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "stagecraft-progress");
      t.setDaemon(true);
      return t;
    });
    ticker.scheduleWithFixedDelay(this::tick, 500, terminal ? 250 : 1000, TimeUnit.MILLISECONDS);
  }

  /** A terminal unless {@link Settings#PROGRESS_ENV} says otherwise ({@code plain} or {@code tty}). */
  public static boolean isTerminal() {
    String forced = System.getenv(Settings.PROGRESS_ENV);
    if (forced != null) {
      return forced.equalsIgnoreCase(Settings.PROGRESS_TTY);
    }
    return System.console() != null;
  }

  @Override
  public synchronized void runStarted(String runId, Workspace workspace, List<String> toRun, List<String> kept) {
    println("Run " + runId + " in " + workspace.uri() + ": " + toRun.size() + " step(s) to run"
        + (kept.isEmpty() ? "" : ", " + kept.size() + " already succeeded (" + String.join(", ", kept) + ")"));
  }

  @Override
  public synchronized void stepStarted(String stepId, String kind, int attempt, String jobGroup) {
    active.put(stepId, new Active(kind, jobGroup, System.nanoTime(), new long[] {0}));
    println("▶ " + stepId + " (" + kind + ") started" + (attempt > 1 ? ", attempt " + attempt : ""));
  }

  @Override
  public void stepProgress(String stepId, String text) {
    status.put(stepId, text);
  }

  @Override
  public synchronized void stepFinished(String stepId, StepRecord r) {
    active.remove(stepId);
    lastStage.remove(stepId);
    status.remove(stepId);
    if (r.status() == StepStatus.SUCCEEDED) {
      StringBuilder s = new StringBuilder("✔ " + stepId + " succeeded in " + String.format("%.1f", r.seconds()) + "s");
      for (Map.Entry<String, OutputRecord> o : r.outputs().entrySet()) {
        if (o.getValue().rows() != null) { // the table output plainly, others by name ("quarantine: 0 rows")
          s.append(" — ").append(o.getKey().equals("output") ? "" : o.getKey() + ": ")
              .append(String.format("%,d rows", o.getValue().rows()));
        }
      }
      if (!r.metrics().isEmpty()) {
        List<String> m = new ArrayList<>();
        r.metrics().forEach((k, v) -> m.add(k + " " + String.format("%.4g", v)));
        s.append(" — ").append(String.join(", ", m));
      }
      println(s.toString());
    } else if (r.status() == StepStatus.SKIPPED) {
      println("– " + stepId + " skipped: " + r.error());
    } else {
      println("✘ " + stepId + " failed after " + String.format("%.1f", r.seconds()) + "s: " + r.error());
    }
  }

  @Override
  public synchronized void runFinished(RunLedger ledger) {
    clearLine();
  }

  private synchronized void tick() {
    try {
      List<String> parts = new ArrayList<>();
      long now = System.nanoTime();
      for (Map.Entry<String, Active> e : active.entrySet()) {
        String step = e.getKey();
        Active a = e.getValue();
        String own = status.get(step);
        String stage = own != null ? own : stageText(a.group());
        String line = step + ": " + (stage == null ? "preparing" : stage) + ", "
            + String.format("%.0fs", (now - a.startNanos()) / 1e9);
        parts.add(line);
        if (!terminal) {
          String stageKey = stage == null || own != null ? ""
              : stage.substring(0, stage.indexOf(':') > 0 ? stage.indexOf(':') : 0);
          boolean newStage = !stageKey.equals(lastStage.put(step, stageKey));
          long ms = System.currentTimeMillis();
          if (stage != null && (newStage || ms - a.lastPrint()[0] >= PLAIN_EVERY_MS)) {
            a.lastPrint()[0] = ms;
            out.println("  " + line);
          }
        }
      }
      if (terminal && !parts.isEmpty()) {
        String line = String.join("  |  ", parts);
        int max = terminalWidth() - 1;
        if (line.length() > max) {
          line = line.substring(0, max - 1) + "…";
        }
        out.print("\r" + line + " ".repeat(Math.max(0, lastWidth - line.length())));
        out.flush();
        lastWidth = line.length();
      }
    } catch (RuntimeException e) {
      // Progress is best effort: never let it disturb the run.
    }
  }

  /** "stage 3 (parquet at …): 5/8 tasks, ETA 4s" for the newest active stage of the group's jobs. */
  private String stageText(String group) {
    SparkStageInfo best = null;
    for (int jobId : tracker.getJobIdsForGroup(group)) {
      SparkJobInfo job = tracker.getJobInfo(jobId).getOrElse(() -> null);
      if (job == null) {
        continue;
      }
      for (int stageId : job.stageIds()) {
        SparkStageInfo st = tracker.getStageInfo(stageId).getOrElse(() -> null);
        if (st != null && st.submissionTime() > 0 && st.numCompletedTasks() < st.numTasks()
            && (best == null || st.stageId() > best.stageId())) {
          best = st;
        }
      }
    }
    if (best == null) {
      return null;
    }
    String name = best.name();
    int cut = name.indexOf(" at ");
    String eta = "";
    int done = best.numCompletedTasks();
    if (done > 0) {
      double elapsed = (System.currentTimeMillis() - best.submissionTime()) / 1000.0;
      eta = String.format(", ETA %.0fs", elapsed * (best.numTasks() - done) / done);
    }
    return "stage " + best.stageId() + " (" + (cut > 0 ? name.substring(0, cut) : name) + "): " + done + "/"
        + best.numTasks() + " tasks" + eta;
  }

  private void println(String line) {
    clearLine();
    out.println(line);
    out.flush();
  }

  private void clearLine() {
    if (terminal && lastWidth > 0) {
      out.print("\r" + " ".repeat(lastWidth) + "\r");
      lastWidth = 0;
    }
  }

  private static int terminalWidth() {
    try {
      return Math.max(40, Integer.parseInt(System.getenv().getOrDefault("COLUMNS", "120")));
    } catch (NumberFormatException e) {
      return 120;
    }
  }

  @Override
  public void close() {
    ticker.shutdownNow();
    synchronized (this) {
      clearLine();
    }
  }
}
