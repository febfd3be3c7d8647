package dev.stagecraft.jobs.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.infer.TinyOnnx;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.jobs.testing.Proc;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The shaded jar as users run it, in its own JVM: on a plain JVM (no Spark: only what does not need it), and
 * embedded with Spark on the classpath as bin/stagecraft runs it. Runs after `package` (failsafe).
 */
class CliIT {
  static final String JAR = System.getProperty("stagecraft.shaded.jar");

  @TempDir Path dir;

  record Result(int code, String out, String err) {}

  static Result java(boolean withSpark, Path cwd, String... args) throws Exception {
    Started s = start(withSpark, cwd, args);
    // The JVM must exit by itself when the command ends (Spark leaves non-daemon threads behind).
    assertThat(s.process().waitFor(180, TimeUnit.SECONDS)).as("the CLI's JVM exited").isTrue();
    return new Result(s.process().exitValue(), Files.readString(s.out()),
        Proc.withoutJvmNotices(Files.readString(s.err())));
  }

  record Started(Process process, Path out, Path err) {}

  static Started start(boolean withSpark, Path cwd, String... args) throws Exception {
    return start(withSpark, cwd, List.of(), args);
  }

  /** @param settings more JVM flags (system properties such as {@code -Dspark.…=…} for SparkConf) */
  static Started start(boolean withSpark, Path cwd, List<String> settings, String... args) throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    String cp = JAR;
    cmd.addAll(settings);
    if (withSpark) {
      cmd.addAll(Arrays.asList(System.getProperty("stagecraft.jvm.flags").trim().split("\\s+")));
      cmd.add("-Xmx2g");
      cmd.add("-Dspark.master=local[2]");
      cmd.add("-Dspark.ui.enabled=false");
      cp = JAR + File.pathSeparator
          + Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim();
    }
    cmd.add("dev.stagecraft.jobs.Main");
    cmd.addAll(List.of(args));
    Path out = Files.createTempFile(cwd, "out", ".txt");
    Path err = Files.createTempFile(cwd, "err", ".txt");
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(cwd.toFile())
        .redirectOutput(out.toFile()).redirectError(err.toFile());
    pb.environment().put("STAGECRAFT_PROGRESS", "plain");
    pb.environment().put("CLASSPATH", cp); // as bin/stagecraft passes it: not on the command line
    return new Started(pb.start(), out, err);
  }

  /**
   * ONNX Runtime 1.29's Java binding crashes the JVM (SIGSEGV, no hs_err file) while it loads when the process's
   * command line is longer than about 4 KiB, as a {@code -cp} with Spark's jars makes it; bin/stagecraft therefore
   * passes the classpath in {@code CLASSPATH}, and so does {@link #start}.
   */
  @Test
  void anOnnxModelScoresThroughTheCli() throws Exception {
    Files.write(dir.resolve("tiny.onnx"), TinyOnnx.logistic(new float[] {0.5f, -1.25f}, 0.1f));
    Files.writeString(dir.resolve("rows.csv"), "id,x0,x1\n1,0.5,1.0\n2,-1.0,2.0\n3,0.0,0.0\n");
    Files.writeString(dir.resolve("wf.yaml"), """
        name: onnx
        steps:
          - { id: rows, kind: load, path: rows.csv, options: { header: true, inferSchema: true } }
          - { id: score, kind: infer, model: tiny.onnx, input: rows, features: [x0, x1], id_columns: [id] }
        """);
    Result r = java(true, dir, "run", "wf.yaml", "--run-id", "o1", "--workspace", dir.resolve("ws").toString());
    assertThat(r.code()).as(r.err()).isZero();
    assertThat(r.out()).contains("Run o1 SUCCEEDED");
    assertThat(Ledgers.newest(dir.resolve("ws"), "o1").path("steps").path("score").path("outputs").path("output")
        .path("rows").asLong()).isEqualTo(3);
  }

  @Test
  void helpAndVersionRunOnAPlainJvmWithoutSpark() throws Exception {
    Result help = java(false, dir, "--help");
    assertThat(help.code()).isZero();
    assertThat(help.out()).contains("Usage: stagecraft").contains("run ").contains("step ").contains("status ")
        .contains("demo ").contains("airflow ");
    Result airflowHelp = java(false, dir, "airflow", "export-dag", "--help");
    assertThat(airflowHelp.code()).as(airflowHelp.err()).isZero();
    assertThat(airflowHelp.out()).contains("--out=DIR").contains("--retries=N");
    Result runHelp = java(false, dir, "run", "--help");
    assertThat(runHelp.code()).isZero();
    assertThat(runHelp.out()).contains("--run-id=ID").contains("--resume").contains("--set=KEY=VALUE");
    Result version = java(false, dir, "--version");
    assertThat(version.code()).isZero();
    assertThat(version.out()).startsWith("stagecraft 0.1.0-SNAPSHOT (built for Spark "
        + System.getProperty("stagecraft.spark.version") + ", Scala " + System.getProperty("stagecraft.scala.binary.version")
        + ")");
    Result wrong = java(false, dir, "rnu");
    assertThat(wrong.code()).isEqualTo(2);
    assertThat(wrong.err()).contains("Unmatched argument at index 0: 'rnu'");
  }

  @Test
  void runsAWorkflowEmbeddedQuietlyAndReportsFailuresInOneLine() throws Exception {
    Files.writeString(dir.resolve("people.csv"), "id,name,age\n1,ann,31\n2,bob,45\n3,cy,27\n");
    Files.writeString(dir.resolve("wf.yaml"), """
        name: people
        params: { extra: missing.csv }
        steps:
          - { id: people, kind: load, path: people.csv, options: { header: true, inferSchema: true } }
          - { id: older, kind: sql, sql: "SELECT name FROM people WHERE age > 30", policy: cpu-etl }
          - { id: extra, kind: load, path: "${extra}", format: csv }
        """);
    String ws = dir.resolve("ws").toString();

    Result failed = java(true, dir, "run", "wf.yaml", "--run-id", "cli1", "--workspace", ws);
    assertThat(failed.code()).as(failed.err()).isEqualTo(1);
    assertThat(failed.out()).contains("▶ people (load) started").contains("✔ older succeeded")
        .contains("✘ extra failed").contains("Run cli1 FAILED");
    assertThat(failed.err().strip().lines().filter(l -> l.startsWith("stagecraft: ")).toList())
        .containsExactly("stagecraft: step 'extra' failed: wf.yaml: step 'extra' field 'path': cannot read "
            + "'missing.csv' as csv: [PATH_NOT_FOUND] Path does not exist: file:" + dir.toRealPath().resolve("missing.csv")
            + ". Resume with: stagecraft run wf.yaml --run-id cli1 --resume");
    assertThat(failed.err()).as("Spark's INFO noise is off, and no stack traces").doesNotContain(" INFO ")
        .doesNotContain("\tat ");

    Files.writeString(dir.resolve("missing.csv"), "a,b\n1,2\n");
    Result resumed = java(true, dir, "run", "wf.yaml", "--run-id", "cli1", "--workspace", ws, "--resume");
    assertThat(resumed.code()).as(resumed.err()).isZero();
    assertThat(resumed.out()).contains("1 step(s) to run, 2 already succeeded (people, older)")
        .contains("Run cli1 SUCCEEDED").contains("${steps.extra.output} = file:");
    assertThat(resumed.out()).as("a whole run ends with its cost report").contains("Cost of run cli1: USD ");
    assertThat(resumed.out().strip().lines().reduce((a, b) -> b).orElseThrow()).contains("cost.png");

    Result cost = java(true, dir, "cost", "cli1", "--workspace", ws);
    assertThat(cost.code()).as(cost.err()).isZero();
    assertThat(cost.out()).contains("Cost of run cli1: USD ").contains("busy cost").contains("idle cost");
    assertThat(cost.out().lines().filter(l -> l.startsWith("extra ") || l.startsWith("total ")).count())
        .isEqualTo(2);
    Result noCost = java(true, dir, "cost", "nope", "--workspace", ws);
    assertThat(noCost.code()).isEqualTo(2);
    assertThat(noCost.err()).contains("Cannot show the cost of run 'nope': no cost report at ");

    Result status = java(true, dir, "status", "cli1", "--workspace", ws);
    assertThat(status.code()).as(status.err()).isZero();
    assertThat(status.out()).contains("run cli1  workflow people  status SUCCEEDED");
    assertThat(status.out().lines().filter(l -> l.startsWith("extra ")).findFirst().orElseThrow())
        .contains("load").contains("SUCCEEDED").contains(" 2 ");

    Result invalid = java(true, dir, "run", "nope.yaml");
    assertThat(invalid.code()).isEqualTo(2);
    assertThat(invalid.err().strip()).isEqualTo("stagecraft: Cannot read workflow nope.yaml: no such file");
  }

  /** The driver SIGKILLed mid-training, data-parallel and pipelined: {@code run --resume} restores every rank. */
  @org.junit.jupiter.params.ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(strings = {"", "parallelism: { pipeline: 2, micro_batches: 4 }"})
  void aRunKilledMidTrainingResumesFromItsLatestCheckpoint(String parallelism) throws Exception {
    Path data = Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/data/a9a.t.libsvm");
    Files.writeString(dir.resolve("wf.yaml"), """
        name: killed
        steps:
          - { id: raw, kind: load, path: "%s", format: libsvm, options: { numFeatures: "123" } }
          - id: fit
            kind: train
            input: raw
            label: label
            workers: 2
            model: { type: mlp, hidden: [64], epochs: 30, batch_size: 128, optimizer: adam, lr: 0.002 }
            checkpoint: { every_steps: 100, keep: 2 }
            %s
        """.formatted(data, parallelism));
    String ws = dir.resolve(parallelism.isEmpty() ? "ws" : "ws-pp").toString();
    Path checkpoints = Path.of(ws, "checkpoints/k1/fit");

    Started first = start(true, dir, "run", "wf.yaml", "--run-id", "k1", "--workspace", ws);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(150);
    long saved = -1;
    while (saved < 0 && first.process().isAlive() && System.nanoTime() < deadline) {
      Thread.sleep(50);
      if (Files.isDirectory(checkpoints)) {
        try (var dirs = Files.list(checkpoints)) {
          saved = dirs.filter(d -> Files.exists(d.resolve("manifest.json")))
              .mapToLong(d -> Long.parseLong(d.getFileName().toString().substring(5))).max().orElse(-1);
        }
      }
    }
    assertThat(first.process().isAlive()).as("still training when the first checkpoint appeared: "
        + Files.readString(first.err())).isTrue();
    first.process().destroyForcibly(); // SIGKILL: no shutdown hook, the lease stays behind
    assertThat(first.process().waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(saved).isPositive();

    // The dead driver's lease does not hold the resume back: its process is gone from this host.
    Result resumed = java(true, dir, "run", "wf.yaml", "--run-id", "k1", "--workspace", ws, "--resume");
    assertThat(resumed.code()).as(resumed.err()).isZero();
    assertThat(resumed.out()).contains("Run k1 SUCCEEDED");
    assertThat(resumed.err().lines().filter(l -> l.startsWith("[W") || l.contains("Warning:")).toList())
        .as("no native-library warnings (libtorch's are '[W… Warning: …' lines) in a run that trained")
        .isEmpty();
    com.fasterxml.jackson.databind.JsonNode fit = Ledgers.newest(Path.of(ws), "k1").path("steps")
        .path("fit");
    assertThat(fit.path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(fit.path("attempts").asInt()).isEqualTo(2);
    long resumedFrom = fit.path("details").path("training_attempts").path(0).path("resumed_from_step").asLong();
    assertThat(resumedFrom).isGreaterThanOrEqualTo(saved);
    assertThat(fit.path("metrics").path("resumed_from_step").asLong()).isEqualTo(resumedFrom);
    assertThat(fit.path("metrics").path("train_accuracy").asDouble()).isGreaterThan(0.8);
  }
}
