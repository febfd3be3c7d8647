package dev.stagecraft.jobs.ledger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.testing.LogCapture;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.stream.IntStream;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The ledger's generations on the local file system, in one JVM (real processes on every store: LedgerRaceIT). */
class LedgerStoreTest {
  @TempDir Path dir;

  static RunLedger fresh(String runId) {
    return new RunLedger(RunLedger.CURRENT_VERSION, runId, "w", "w.yaml", "file:/ws", RunStatus.RUNNING,
        "2026-12-04T10:00:00Z", "2026-12-04T10:00:00Z", Map.of(), Map.of());
  }

  /** One more parameter: what a writer adds, so lost updates show. */
  static RunLedger add(RunLedger l, String key) {
    Map<String, String> params = new java.util.LinkedHashMap<>(l.params());
    params.put(key, "x");
    return l.withParams(params, RunLedger.now());
  }

  @Test
  void writersRacingOnOneLedgerLoseNoUpdate() throws Exception {
    LedgerStore store = new LedgerStore(new Workspace(dir.toString(), new Configuration()));
    store.update("r", none -> fresh("r"));
    List<CompletableFuture<Void>> writers = new ArrayList<>();
    for (int w = 0; w < 6; w++) {
      int me = w;
      writers.add(CompletableFuture.runAsync(() -> IntStream.range(0, 20)
          .forEach(i -> store.update("r", l -> add(l, me + "-" + i)))));
    }
    CompletableFuture.allOf(writers.toArray(CompletableFuture[]::new)).get();
    assertThat(store.read("r").orElseThrow().params()).hasSize(6 * 20);
    List<Long> whole = new ArrayList<>();
    try (var files = Files.list(dir.resolve("runs/r/ledger"))) {
      for (Path f : files.filter(f -> f.getFileName().toString().matches("\\d{10}\\.json")).toList()) {
        if (!Generations.isPruned(Files.readAllBytes(f))) {
          whole.add(Long.parseLong(f.getFileName().toString().substring(0, 10)));
        }
      }
    }
    assertThat(whole).as("older generations are emptied, every name kept").hasSizeBetween(LedgerStore.KEPT,
        2 * LedgerStore.KEPT).contains(1L + 6 * 20);
  }

  @Test
  void aTornNewestGenerationIsReportedAndThePreviousOneRead() throws Exception {
    LedgerStore store = new LedgerStore(new Workspace(dir.toString(), new Configuration()));
    store.update("t", none -> fresh("t"));
    store.update("t", l -> add(l, "second"));
    store.update("t", l -> add(l, "third"));
    // A power loss on a store that did not keep the write: the newest generation is cut short.
    Path newest = dir.resolve("runs/t/ledger/0000000003.json");
    byte[] whole = Files.readAllBytes(newest);
    Files.write(newest, java.util.Arrays.copyOf(whole, whole.length / 2));
    try (LogCapture log = new LogCapture(LedgerStore.class)) {
      assertThat(store.read("t").orElseThrow().params()).containsOnlyKeys("second");
      assertThat(log.lines()).anySatisfy(l -> assertThat(l).startsWith("WARN Ledger generation ")
          .contains("0000000003.json of run 't' is torn (" + whole.length / 2 + " bytes"));
    }
    // The next update builds on the good copy and never reuses the torn one's name.
    store.update("t", l -> add(l, "fourth"));
    assertThat(dir.resolve("runs/t/ledger/0000000004.json")).exists();
    assertThat(store.read("t").orElseThrow().params()).containsOnlyKeys("second", "fourth");


    // Nothing readable at all: said so, naming the folder, rather than read as a new run.
    Path empty = Files.createDirectories(dir.resolve("runs/u/ledger")).resolve("0000000001.json");
    Files.write(empty, new byte[0]);
    assertThatThrownBy(() -> store.read("u")).hasMessage("Cannot read the ledger of run 'u': none of its 1 "
        + "generations in " + new Workspace(dir.toString(), new Configuration()).ledgerDir("u") + " is a Stagecraft "
        + "ledger");
  }

  @Test
  void anUpdateUnderAnOlderEpochThanTheLedgerKnowsIsRefusedAndWritesNothing() throws Exception {
    Workspace ws = new Workspace(dir.toString(), new Configuration());
    org.apache.hadoop.fs.Path lease = ws.runLease("f");
    LedgerStore old = new LedgerStore(ws).fenced(Fence.NONE.claiming("run", 1, lease));
    LedgerStore newer = new LedgerStore(ws).fenced(Fence.NONE.claiming("run", 2, lease));
    old.update("f", none -> fresh("f"));
    newer.update("f", l -> add(l, "newer"));
    assertThat(newer.read("f").orElseThrow().fences()).containsEntry("run", 2L);
    assertThatThrownBy(() -> old.update("f", l -> add(l, "old"))).isInstanceOf(LeaseLostException.class)
        .hasMessageStartingWith("Lost the run lease (epoch 1) to another process");
    assertThat(old.read("f").orElseThrow().params()).containsOnlyKeys("newer");
  }
}
