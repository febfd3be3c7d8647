package dev.stagecraft.jobs.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.policies.sizing.StepObservation;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What sizing learns from a run's record of a step. */
class StepSizingHistoryTest {
  private static StepRecord succeeded(double seconds, Map<String, Object> details) {
    return StepRecord.pending("train", List.of()).started("2026-11-28T10:00:00Z")
        .succeeded("2026-11-28T10:01:00Z", seconds, Map.of(), Map.of(), "f", details);
  }

  @Test
  void aStepRunAsItsOwnApplicationTookTheApplicationsWholeLife() {
    // 12 s inside the training application; 31.5 s from spark-submit to its exit, which the run waited for.
    StepRecord launched = succeeded(12.0, Map.of("application", Map.of("placement", "own application",
        "exit_code", 0, "seconds", 31.5)));
    assertThat(StepSizing.observedSeconds(launched)).isEqualTo(31.5);
  }

  @Test
  void aStepRunInTheWorkflowsApplicationTookItsOwnSeconds() {
    assertThat(StepSizing.observedSeconds(succeeded(12.0, Map.of()))).isEqualTo(12.0);
    // An application record without a duration (it failed to start) changes nothing.
    assertThat(StepSizing.observedSeconds(succeeded(12.0, Map.of("application", Map.of("placement",
        "own application"))))).isEqualTo(12.0);
  }

  @Test
  void historyIsTheSameWorkflowsRunsEvenBehindManyNewerRunsOfOthers(@TempDir Path dir) throws Exception {
    Workspace ws = new Workspace(dir.toString(), new Configuration());
    LedgerStore store = new LedgerStore(ws);
    CostReport.Line line = new CostReport.Line(0.01, 0.008, 0.002, 0, 40, 10, 40, 0, 0, 0, null);
    long time = System.currentTimeMillis() - 3_600_000;
    // One run of 'mine', then more runs of 'other' than the history reads, all newer.
    List<String> runs = new ArrayList<>(List.of("mine-1"));
    for (int i = 0; i < StepSizing.HISTORY_RUNS + 5; i++) {
      runs.add("other-" + i);
    }
    for (String run : runs) {
      String workflow = run.startsWith("mine") ? "mine" : "other";
      store.update(run, none -> new RunLedger(RunLedger.CURRENT_VERSION, run, workflow, workflow + ".yaml",
          ws.uri(), RunStatus.SUCCEEDED, "2026-11-28T10:00:00Z", "2026-11-28T10:01:00Z", Map.of(),
          Map.of("s", StepRecord.pending("train", List.of()).started("2026-11-28T10:00:00Z").succeeded(
              "2026-11-28T10:01:00Z", 50.0, Map.of(), Map.of("loop_seconds", run.startsWith("mine") ? 100.0 : 7.0),
              "f", Map.of()))));
      CostFiles.write(ws, run, new CostReport("USD", "test", "2026-11-28", 60, line, Map.of("s", line), List.of(),
          List.of()));
      Files.setLastModifiedTime(dir.resolve("runs").resolve(run), FileTime.fromMillis(time += 1000));
    }

    StepSizing.History history = StepSizing.history(ws, "mine", "s", "now");
    List<StepObservation> mine = history.runs();
    assertThat(history.newestMetrics()).as("the newest run's metrics, for what a kind measures")
        .containsEntry("loop_seconds", 100.0);
    assertThat(mine).extracting(StepObservation::runId).containsExactly("mine-1");
    assertThat(mine.get(0).seconds()).isEqualTo(50.0);
    assertThat(StepSizing.history(ws, "other", "s", "now").runs()).as("at most the newest %d runs of one workflow",
        StepSizing.HISTORY_RUNS).hasSize(StepSizing.HISTORY_RUNS);
  }
}
