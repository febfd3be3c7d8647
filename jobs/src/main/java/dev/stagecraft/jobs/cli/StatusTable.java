package dev.stagecraft.jobs.cli;

import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepRecord;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** A run's ledger as a table for people. */
final class StatusTable {
  private StatusTable() {}

  static void print(RunLedger ledger, PrintStream out) {
    out.printf("run %s  workflow %s  status %s%n", ledger.runId(), ledger.workflow(), ledger.status());
    out.printf("workspace %s  created %s  updated %s%n", ledger.workspace(), ledger.created(), ledger.updated());
    if (!ledger.params().isEmpty()) {
      out.println("params " + ledger.params());
    }
    List<String[]> rows = new ArrayList<>();
    rows.add(new String[] {"STEP", "KIND", "STATUS", "ATTEMPTS", "STARTED", "SECONDS", "ROWS", "OUTPUT / ERROR"});
    for (Map.Entry<String, StepRecord> e : ledger.steps().entrySet()) {
      StepRecord r = e.getValue();
      String rowsText = r.outputs().values().stream().filter(OutputRecord::isTable).findFirst()
          .map(o -> String.format("%,d", o.rows())).orElse("");
      String detail = r.error() != null ? r.error()
          : r.outputs().values().stream().findFirst().map(OutputRecord::uri).orElse("");
      if (!r.metrics().isEmpty()) {
        detail = detail + "  " + r.metrics();
      }
      rows.add(new String[] {
        e.getKey(), r.kind(), r.status().name(), String.valueOf(r.attempts()),
        r.started() == null ? "" : r.started(), r.seconds() == null ? "" : String.format("%.1f", r.seconds()),
        rowsText, detail
      });
    }
    int[] width = new int[rows.get(0).length];
    for (String[] row : rows) {
      for (int i = 0; i < row.length - 1; i++) {
        width[i] = Math.max(width[i], row[i].length());
      }
    }
    for (String[] row : rows) {
      StringBuilder line = new StringBuilder();
      for (int i = 0; i < row.length; i++) {
        line.append(i == row.length - 1 ? row[i] : String.format("%-" + width[i] + "s  ", row[i]));
      }
      out.println(line.toString().stripTrailing());
    }
    // sizing decisions and deadlines, with the numbers they used
    for (Map.Entry<String, StepRecord> e : ledger.steps().entrySet()) {
      Map<String, Object> d = e.getValue().details();
      if (d == null) {
        continue;
      }
      if (d.get("sizing") instanceof Map<?, ?> z) {
        out.printf("sizing %s: %s, policy %s, %s executor(s), task GPUs %s, %s — %s%n", e.getKey(), z.get("mode"),
            z.get("policy"), z.get("executors"), z.get("task_gpus"), z.get("market"), z.get("reason"));
        if (z.get("numbers") instanceof Map<?, ?> n && !n.isEmpty()) {
          out.printf("  numbers %s%n", n);
        }
      }
      if (d.get("deadline") instanceof Map<?, ?> dl) {
        out.printf("deadline %s: %s s, took %s s — %s%n", e.getKey(), dl.get("deadline_seconds"), dl.get("seconds"),
            Boolean.TRUE.equals(dl.get("met")) ? "met" : "MISSED");
      }
    }
  }
}
