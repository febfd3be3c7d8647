package dev.stagecraft.jobs.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class StatusTableTest {
  @Test
  void showsSizingDecisionsWithTheirNumbersAndDeadlines() {
    Map<String, Object> sizing = new LinkedHashMap<>();
    sizing.put("mode", "auto");
    sizing.put("policy", "cpu-etl@auto:q");
    sizing.put("executors", 2);
    sizing.put("task_gpus", 0.0);
    sizing.put("market", "spot");
    sizing.put("reason", "2 executor(s) (was 4.0): only 1.2 were busy on average");
    sizing.put("numbers", Map.of("history_run", "r0"));
    Map<String, Object> deadline = new LinkedHashMap<>();
    deadline.put("deadline_seconds", 60.0);
    deadline.put("seconds", 75.5);
    deadline.put("met", false);
    StepRecord q = StepRecord.pending("sql", List.of()).started("2026-11-28T05:00:00Z")
        .succeeded("2026-11-28T05:01:15Z", 75.5, Map.of(), Map.of(), "f", Map.of("sizing", sizing,
            "deadline", deadline));
    RunLedger ledger = new RunLedger(1, "r1", "w", "wf.yaml", "file:/ws", RunStatus.SUCCEEDED,
        "2026-11-28T05:00:00Z", "2026-11-28T05:01:15Z", Map.of(), Map.of("q", q));
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    StatusTable.print(ledger, new PrintStream(bytes, true, StandardCharsets.UTF_8));
    String out = bytes.toString(StandardCharsets.UTF_8);
    assertThat(out).contains("sizing q: auto, policy cpu-etl@auto:q, 2 executor(s), task GPUs 0.0, spot — 2 "
        + "executor(s) (was 4.0): only 1.2 were busy on average\n  numbers {history_run=r0}\n");
    assertThat(out).contains("deadline q: 60.0 s, took 75.5 s — MISSED\n");
  }
}
