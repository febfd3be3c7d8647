package dev.stagecraft.jobs.ledger;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.testing.HadoopStores;
import dev.stagecraft.testing.HadoopStores.Store;
import dev.stagecraft.testing.StandaloneCluster;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Leases and ledger updates raced by real processes (JVMs, not threads) on the local file system, a real HDFS
 * (MiniDFSCluster) and a real S3 API (s3proxy), through exactly the calls the engine makes: {@link Lease#acquire}
 * for the run's or a step's lease, then fenced {@link LedgerStore#update}s. Spark is left out of these JVMs (each
 * would take seconds to start; 8 processes × 50 rounds of {@code step} would take an hour): the engine adds nothing
 * to the lease or the ledger between those calls. {@code CliIT} races whole {@code run --resume} processes.
 */
class LeaseRaceTest {
  @RegisterExtension static final HadoopStores STORES = new HadoopStores();
  static final Duration STALE = Duration.ofSeconds(3);
  static final Duration BEAT = Duration.ofMillis(500);

  @TempDir Path tmp;

  static Stream<Store> stores() throws Exception {
    return STORES.fresh("race");
  }

  /** N processes take the run's lease at one instant; the winner holds it until every loser has answered. */
  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void ofProcessesRacingForOneRunExactlyOneRuns(Store store) throws Exception {
    int n = 5;
    Path conf = conf(store);
    long startAt = System.currentTimeMillis() + 4_000; // after every JVM has started
    List<Process> racers = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      racers.add(child(conf, "race", store.root().toString(), "r", Long.toString(startAt), tmp.toString(),
          Integer.toString(n)));
    }
    List<String> outcomes = outcomes(racers);
    assertThat(outcomes.stream().filter(o -> o.startsWith("won")).count()).as(outcomes.toString()).isEqualTo(1);
    assertThat(outcomes.stream().filter(o -> o.startsWith("refused: Cannot start run 'r': it is live in another "
        + "process: pid ")).count()).as(outcomes.toString()).isEqualTo(n - 1);
    RunLedger ledger = store(store).read("r").orElseThrow();
    assertThat(ledger.params()).as("one process wrote the run").hasSize(1);
    assertThat(ledger.fences()).containsEntry("run", 1L);
  }

  /** The Airflow case: 8 `step` processes of one run, each holding its step's lease, 50 ledger updates each. */
  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void concurrentStepProcessesOfOneRunLoseNoLedgerUpdate(Store store) throws Exception {
    int steps = 8;
    int rounds = 50;
    Path conf = conf(store);
    store(store).update("s", none -> new RunLedger(RunLedger.CURRENT_VERSION, "s", "w", "w.yaml", "ws",
        RunStatus.RUNNING, RunLedger.now(), RunLedger.now(), Map.of(), Map.of()));
    long startAt = System.currentTimeMillis() + 4_000;
    List<Process> writers = new ArrayList<>();
    for (int i = 0; i < steps; i++) {
      writers.add(child(conf, "steps", store.root().toString(), "s", Long.toString(startAt), "step" + i,
          Integer.toString(rounds)));
    }
    assertThat(outcomes(writers)).allMatch(o -> o.startsWith("done"));
    RunLedger ledger = store(store).read("s").orElseThrow();
    assertThat(ledger.params()).as(() -> "every update of every process; the processes said:\n" + said(writers))
        .hasSize(steps * rounds);
    for (int i = 0; i < steps; i++) {
      assertThat(ledger.fences()).containsEntry("step:step" + i, 1L);
    }
  }

  /**
   * A holder paused (SIGSTOP) past its lease, a new holder takes over, the old one resumes (SIGCONT): the old one's
   * next update is refused, naming the new holder, and the ledger holds the new holder's work only.
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void aPausedHolderThatWakesUpAfterATakeoverCommitsNothing(Store store) throws Exception {
    Path conf = conf(store);
    Path go = tmp.resolve("go");
    Process old = child(conf, "hold", store.root().toString(), "p", go.toString());
    Path oldOut = tmp.resolve("out-" + old.pid());
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    while (!Files.readString(oldOut).contains("holding") && System.nanoTime() < deadline) {
      assertThat(old.isAlive()).as(Files.readString(oldOut)).isTrue();
      Thread.sleep(100);
    }
    assertThat(new ProcessBuilder("kill", "-STOP", Long.toString(old.pid())).start().waitFor()).isZero();
    try {
      Thread.sleep(STALE.toMillis()); // until its last heartbeat looks old; the new holder then watches it unchanged
      Process next = child(conf, "race", store.root().toString(), "p", "0", tmp.toString(), "1");
      assertThat(outcomes(List.of(next))).singleElement().asString().startsWith("won");
    } finally {
      assertThat(new ProcessBuilder("kill", "-CONT", Long.toString(old.pid())).start().waitFor()).isZero();
    }
    Files.writeString(go, "commit now");
    assertThat(old.waitFor(60, TimeUnit.SECONDS)).isTrue();
    String said = Files.readString(oldOut);
    assertThat(old.exitValue()).as(said).isEqualTo(3);
    assertThat(said).contains("fenced: Lost the run lease (epoch 1) to another process: epoch 2, pid ");
    RunLedger ledger = store(store).read("p").orElseThrow();
    assertThat(ledger.params().keySet()).as("the old holder's first update and the new holder's; not the fenced one")
        .hasSize(2).noneMatch(k -> k.startsWith("late-"));
    assertThat(ledger.fences()).containsEntry("run", 2L);
  }

  /** What the processes logged (warnings and errors), for a failure's message. */
  private String said(List<Process> ps) {
    StringBuilder b = new StringBuilder();
    for (Process p : ps) {
      try {
        Files.readString(tmp.resolve("out-" + p.pid())).lines().filter(l -> !l.startsWith("done"))
            .forEach(l -> b.append(p.pid()).append(": ").append(l).append('\n'));
      } catch (java.io.IOException e) {
        b.append(p.pid()).append(": ").append(e).append('\n');
      }
    }
    return b.toString();
  }

  private static LedgerStore store(Store store) throws Exception {
    return new LedgerStore(new Workspace(store.root().toString(), store.conf()));
  }

  /** The store's configuration (S3 keys included) in a file only this user reads, for the child JVMs. */
  private Path conf(Store store) throws Exception {
    Path file = tmp.resolve("conf-" + store.name() + ".xml");
    Files.createFile(file, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    try (OutputStream out = Files.newOutputStream(file)) {
      store.conf().writeXml(out);
    }
    return file;
  }

  private Process child(Path conf, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
        "-Dlog4j2.configurationFile=" + System.getProperty("log4j2.configurationFile", ""),
        "-cp", StandaloneCluster.testClassPath(), Child.class.getName(), conf.toString()));
    cmd.addAll(List.of(args));
    Path log = Files.createTempFile(tmp, "child", ".log");
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    Files.move(log, tmp.resolve("out-" + p.pid()));
    return p;
  }

  /** Each process's last line ("won", "refused: …", "done", "fenced: …"), after all exited. */
  private List<String> outcomes(List<Process> ps) throws Exception {
    List<String> out = new ArrayList<>();
    for (Process p : ps) {
      boolean exited = p.waitFor(180, TimeUnit.SECONDS);
      String text = Files.readString(tmp.resolve("out-" + p.pid()));
      if (!exited) {
        p.destroyForcibly();
      }
      assertThat(exited).as(text).isTrue();
      assertThat(p.exitValue()).as(text).isZero();
      List<String> lines = text.lines().filter(l -> l.matches("(won|refused|done|fenced).*")).toList();
      assertThat(lines).as(text).isNotEmpty();
      out.add(lines.get(lines.size() - 1));
    }
    return out;
  }

  /**
   * One racing process. {@code race STORE RUN START-AT RESULTS N}: takes the run lease at START-AT (epoch ms), writes
   * the ledger, holds the lease until N - 1 others have answered in RESULTS. {@code steps STORE RUN START-AT STEP
   * ROUNDS}: takes the step's lease, then updates the ledger ROUNDS times. {@code hold STORE RUN GO}: takes the run
   * lease, updates the ledger, says "holding", waits for the file GO, updates again (exit 3 if that is refused).
   */
  public static final class Child {
    public static void main(String[] args) throws Exception {
      Configuration conf = new Configuration();
      conf.addResource(new org.apache.hadoop.fs.Path(Path.of(args[0]).toUri()));
      String mode = args[1];
      Workspace ws = new Workspace(args[2], conf);
      String run = args[3];
      String me = Long.toString(ProcessHandle.current().pid());
      switch (mode) {
        case "race" -> {
          waitUntil(Long.parseLong(args[4]));
          Path results = Path.of(args[5]);
          int n = Integer.parseInt(args[6]);
          try (Lease lease = Lease.acquire(ws.ledgerFs(), ws.runLease(run), "run", "run '" + run + "'", "race",
              STALE, BEAT)) {
            new LedgerStore(ws).fenced(Fence.of(lease)).update(run, l -> withParam(l, run, "winner-" + me));
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (answered(results) < n - 1 && System.nanoTime() < deadline) {
              Thread.sleep(50);
            }
            System.out.println("won");
          } catch (dev.stagecraft.spi.StagecraftException e) {
            System.out.println("refused: " + e.getMessage());
            Files.writeString(results.resolve("answered-" + me), e.getMessage());
          }
        }
        case "steps" -> {
          waitUntil(Long.parseLong(args[4]));
          String step = args[5];
          int rounds = Integer.parseInt(args[6]);
          try (Lease lease = Lease.acquire(ws.ledgerFs(), ws.stepLease(run, step), "step:" + step,
              "step '" + step + "'", "step", STALE, BEAT)) {
            LedgerStore store = new LedgerStore(ws).fenced(Fence.of(lease));
            for (int i = 0; i < rounds; i++) {
              String key = step + "-" + i;
              store.update(run, l -> withParam(l, run, key));
            }
          }
          System.out.println("done");
        }
        case "hold" -> {
          Path go = Path.of(args[4]);
          try (Lease lease = Lease.acquire(ws.ledgerFs(), ws.runLease(run), "run", "run '" + run + "'", "hold",
              STALE, BEAT)) {
            LedgerStore store = new LedgerStore(ws).fenced(Fence.of(lease));
            store.update(run, l -> withParam(l, run, "first-" + me));
            System.out.println("holding");
            while (!Files.exists(go)) {
              Thread.sleep(50);
            }
            store.update(run, l -> withParam(l, run, "late-" + me));
            System.out.println("committed after a takeover");
          } catch (LeaseLostException e) {
            System.out.println("fenced: " + e.getMessage());
            System.exit(3);
          }
        }
        default -> throw new IllegalArgumentException("unknown mode " + mode);
      }
      System.exit(0);
    }

    private static long answered(Path results) throws Exception {
      try (Stream<Path> files = Files.list(results)) {
        return files.filter(f -> f.getFileName().toString().startsWith("answered-")).count();
      }
    }

    private static void waitUntil(long epochMillis) throws InterruptedException {
      long wait = epochMillis - System.currentTimeMillis();
      if (wait > 0) {
        Thread.sleep(wait);
      }
    }

    private static RunLedger withParam(RunLedger l, String run, String key) {
      RunLedger base = l != null ? l : new RunLedger(RunLedger.CURRENT_VERSION, run, "w", "w.yaml", "ws",
          RunStatus.RUNNING, RunLedger.now(), RunLedger.now(), Map.of(), Map.of());
      Map<String, String> params = new java.util.LinkedHashMap<>(base.params());
      params.put(key, "x");
      return base.withParams(params, RunLedger.now());
    }
  }
}
