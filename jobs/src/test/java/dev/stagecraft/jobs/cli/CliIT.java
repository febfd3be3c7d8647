package dev.stagecraft.jobs.cli;

import static org.assertj.core.api.Assertions.assertThat;

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
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    String cp = JAR;
    if (withSpark) {
      cmd.addAll(Arrays.asList(System.getProperty("stagecraft.jvm.flags").trim().split("\\s+")));
      cmd.add("-Xmx2g");
      cmd.add("-Dspark.master=local[2]");
      cmd.add("-Dspark.ui.enabled=false");
      cp = JAR + File.pathSeparator
          + Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim();
    }
    cmd.add("-cp");
    cmd.add(cp);
    cmd.add("dev.stagecraft.jobs.Main");
    cmd.addAll(List.of(args));
    Path out = Files.createTempFile(cwd, "out", ".txt");
    Path err = Files.createTempFile(cwd, "err", ".txt");
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(cwd.toFile())
        .redirectOutput(out.toFile()).redirectError(err.toFile());
    pb.environment().put("STAGECRAFT_PROGRESS", "plain");
    Process p = pb.start();
    // The JVM must exit by itself when the command ends (Spark leaves non-daemon threads behind).
    assertThat(p.waitFor(180, TimeUnit.SECONDS)).as("the CLI's JVM exited").isTrue();
    return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
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
    assertThat(version.out()).startsWith("stagecraft 0.1.0-SNAPSHOT (built for Spark 3.5.5, Scala 2.12)");
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
          - { id: older, kind: sql, sql: "SELECT name FROM people WHERE age > 30" }
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

    Result status = java(true, dir, "status", "cli1", "--workspace", ws);
    assertThat(status.code()).as(status.err()).isZero();
    assertThat(status.out()).contains("run cli1  workflow people  status SUCCEEDED");
    assertThat(status.out().lines().filter(l -> l.startsWith("extra ")).findFirst().orElseThrow())
        .contains("load").contains("SUCCEEDED").contains(" 2 ");

    Result invalid = java(true, dir, "run", "nope.yaml");
    assertThat(invalid.code()).isEqualTo(2);
    assertThat(invalid.err().strip()).isEqualTo("stagecraft: Cannot read workflow nope.yaml: no such file");
  }
}
