package dev.stagecraft.jobs.airflow;

import static dev.stagecraft.jobs.airflow.AirflowClient.seconds;

import dev.stagecraft.jobs.airflow.AirflowClient.Patience;
import dev.stagecraft.jobs.airflow.AirflowException.Reason;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.function.Consumer;

/**
 * One {@link AirflowClient#await}: polls a DAG run until it ends, riding out outages for the configured grace.
 *
 * <p>An outage starts with the first poll Airflow does not answer (unreachable, or 5xx after each request's own
 * retries) and ends with the next answered one. Every request of a poll gets {@link AirflowClient.Config#
 * pollRequestTimeout()} and none outlives the grace of the outage it is part of (or would start), so a network that
 * drops packets without a reset cannot hold the wait past the grace.
 */
final class RunWait {
  private final AirflowClient client;
  private final AirflowClient.Config config;
  private final Clock clock;
  private final String dagId;
  private final String runId;
  private final Consumer<String> progress;
  private final Consumer<Outage> outages;

  private Instant outageSince; // null: Airflow answered the last poll
  private String outageError;
  private String recovered; // said on the next progress line: Airflow answered again

  RunWait(AirflowClient client, Clock clock, String dagId, String runId, Consumer<String> progress,
      Consumer<Outage> outages) {
    this.client = client;
    this.config = client.config();
    this.clock = clock;
    this.dagId = dagId;
    this.runId = runId;
    this.progress = progress;
    this.outages = outages;
  }

  DagRun await(Duration timeout) {
    Instant start = clock.instant();
    Instant deadline = start.plus(timeout);
    String last = null;
    Instant lastPrinted = Instant.MIN;
    while (true) {
      Instant pollStart = clock.instant();
      Patience patience = new Patience(config.pollRequestTimeout(),
          (outageSince == null ? pollStart : outageSince).plus(config.outageGrace()));
      DagRun run;
      List<TaskInstance> tasks;
      try {
        run = client.dagRun(dagId, runId, patience);
        tasks = client.taskInstances(dagId, runId, patience);
      } catch (AirflowException e) {
        unanswered(e, pollStart, deadline);
        AirflowClient.sleep(config.poll());
        continue;
      }
      Instant now = clock.instant();
      if (outageSince != null) {
        answeredAgain(now);
        last = null; // print where the run stands now
      }
      String summary = AirflowClient.summary(run, tasks);
      // A line when something changed, and every 30 s so a log shows the wait is alive.
      if (!summary.equals(last) || Duration.between(lastPrinted, now).compareTo(Duration.ofSeconds(30)) >= 0
          || run.state().isFinal()) {
        progress.accept(summary + " — " + Duration.between(start, now).toSeconds() + "s"
            + (recovered == null ? "" : "; " + recovered));
        recovered = null;
        last = summary;
        lastPrinted = now;
      }
      if (run.state().isFinal()) {
        return run;
      }
      if (now.isAfter(deadline)) {
        throw new AirflowException(Reason.TIMEOUT, 0, "Cannot wait longer for run '" + runId + "' of DAG '" + dagId
            + "': still " + run.state().apiName() + " after " + timeout.toSeconds() + "s (" + summary + ")");
      }
      AirflowClient.sleep(config.poll());
    }
  }

  /** A poll went unanswered: part of an outage, which is ridden out until its grace is spent. */
  private void unanswered(AirflowException e, Instant pollStart, Instant deadline) {
    boolean transientError = e.reason() == Reason.UNREACHABLE || e.reason() == Reason.SERVER_ERROR;
    if (!transientError || Thread.currentThread().isInterrupted()) {
      throw e;
    }
    Instant now = clock.instant();
    outageSince = outageSince == null ? pollStart : outageSince;
    outageError = e.getMessage();
    Duration down = Duration.between(outageSince, now);
    if (down.compareTo(config.outageGrace()) >= 0 || now.isAfter(deadline)) {
      outages.accept(new Outage(outageSince, down, outageError, false));
      throw gaveUp(e, down);
    }
    progress.accept("Airflow did not answer (" + e.getMessage() + "); still waiting for run '" + runId
        + "', retrying for up to " + seconds(config.outageGrace()) + " (" + seconds(down) + " so far)");
  }

  private void answeredAgain(Instant now) {
    Duration down = Duration.between(outageSince, now);
    outages.accept(new Outage(outageSince, down, outageError, true));
    // Said on the next progress line, not a line of its own: a console that samples progress (a log) keeps the newest
    // line, and that one stays until the run's state changes.
    recovered = "Airflow at " + config.baseUrl() + " answered again after " + seconds(down);
    outageSince = null;
  }

  /** The one-line error of a wait that gave up on an outage: Airflow's URL, for how long, and the last error. */
  private AirflowException gaveUp(AirflowException last, Duration down) {
    String how = last.reason() == Reason.UNREACHABLE ? "has been unreachable" : "has failed every request";
    return new AirflowException(last.reason(), "Cannot wait for run '" + runId + "' of DAG '" + dagId
        + "': Airflow at " + config.baseUrl() + " " + how + " for " + seconds(down) + " (longer than the "
        + seconds(config.outageGrace()) + " a wait rides out); last error: " + last.getMessage(), null);
  }
}
