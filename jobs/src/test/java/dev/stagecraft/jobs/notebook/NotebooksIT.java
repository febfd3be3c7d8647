package dev.stagecraft.jobs.notebook;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.jobs.testing.Proc;
import dev.stagecraft.jobs.testing.PythonEnvs;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every notebook in {@code notebooks/} executed headlessly by nbclient on the real JJava kernel ({@code java}), with
 * the shaded jar and Spark on the kernel's classpath as {@code bin/notebook} sets them; and the runner's checks
 * (a failing cell, a missing image, outputs committed to git) shown to fail a notebook. Runs after {@code package}.
 */
class NotebooksIT {
  static final Path ROOT = Path.of(System.getProperty("stagecraft.repo.root"));
  static final Path RUNNER = ROOT.resolve("bin/run-notebooks.py");
  static Path venv;

  @TempDir Path dir;

  @BeforeAll
  static void findVenv() {
    venv = PythonEnvs.notebookVenv().orElse(null);
    Assumptions.assumeTrue(venv != null, PythonEnvs.MISSING_NOTEBOOK);
  }

  /** What bin/notebook exports: the jar and Spark for the kernel, Spark's JVM flags, Java 17 first on PATH. */
  static Map<String, String> kernelEnv() throws Exception {
    Map<String, String> env = new HashMap<>();
    env.put("JJAVA_CLASSPATH", System.getProperty("stagecraft.shaded.jar") + File.pathSeparator
        + Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim());
    env.put("JJAVA_JVM_OPTS", System.getProperty("stagecraft.jvm.flags").trim() + " -Xmx3g");
    env.put("PATH", Path.of(System.getProperty("java.home"), "bin") + File.pathSeparator + System.getenv("PATH"));
    env.put("STAGECRAFT_HOME", ROOT.toString());
    return env;
  }

  static Proc.Result runNotebooks(Path out, List<Path> notebooks, Path cwd, Duration timeout) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(venv.resolve("bin/python").toString(), RUNNER.toString(),
        "--out", out.toString()));
    notebooks.forEach(n -> cmd.add(n.toString()));
    return Proc.run(cmd, kernelEnv(), cwd, timeout);
  }

  @Test
  void everyNotebookRunsOnTheJavaKernelWithItsImagesAndChecks() throws Exception {
    List<Path> notebooks;
    try (Stream<Path> s = Files.list(ROOT.resolve("notebooks"))) {
      notebooks = s.filter(p -> p.toString().endsWith(".ipynb")).sorted().toList();
    }
    assertThat(notebooks).extracting(p -> p.getFileName().toString()).contains("01-quickstart.ipynb",
        "02-checkpoints-and-recovery.ipynb", "03-cost-and-policies.ipynb");
    Path out = ROOT.resolve("jobs/target/notebooks");
    long start = System.nanoTime();
    Proc.Result r = runNotebooks(out, notebooks, dir, Duration.ofMinutes(25));
    double seconds = (System.nanoTime() - start) / 1e9;
    System.out.printf("notebooks executed in %.1f s:%n%s%n", seconds, r.out());
    assertThat(r.code()).as(r.out() + r.err()).isZero();
    assertThat(r.out()).contains("notebooks: " + notebooks.size() + " passed, 0 failed");

    ObjectMapper json = new ObjectMapper();
    Map<String, Integer> minImages = Map.of("01-quickstart.ipynb", 1, "02-checkpoints-and-recovery.ipynb", 1,
        "03-cost-and-policies.ipynb", 2);
    for (Map.Entry<String, Integer> e : minImages.entrySet()) {
      JsonNode nb = json.readTree(out.resolve(e.getKey()).toFile());
      int images = 0;
      StringBuilder text = new StringBuilder();
      for (JsonNode cell : nb.path("cells")) {
        for (JsonNode o : cell.path("outputs")) {
          images += o.path("data").has("image/png") ? 1 : 0;
          o.path("text").forEach(t -> text.append(t.asText()));
          if (o.path("text").isTextual()) {
            text.append(o.path("text").asText());
          }
        }
      }
      assertThat(images).as(e.getKey() + " image outputs").isGreaterThanOrEqualTo(e.getValue());
      assertThat(text.toString()).as(e.getKey() + " ends with its checks").contains("checks passed");
    }
  }

  @Test
  void theRunnerFailsANotebookOnACellErrorAMissingImageOrCommittedOutputs() throws Exception {
    Path throwing = notebook("throws.ipynb", """
        {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
         "source": ["double accuracy = 0.5;\\n", "if (!(accuracy >= 0.84)) throw new AssertionError(\\"accuracy \\" + accuracy + \\" < 0.84\\");"]}
        """);
    Path noImage = notebook("no-image.ipynb", """
        {"cell_type": "code", "execution_count": null, "metadata": {"tags": ["image"]}, "outputs": [],
         "source": ["System.out.println(\\"no chart here\\");"]}
        """);
    Path committed = notebook("committed.ipynb", """
        {"cell_type": "code", "execution_count": 3, "metadata": {}, "outputs": [
          {"output_type": "stream", "name": "stdout", "text": ["left over\\n"]}], "source": ["1 + 1"]}
        """);
    Proc.Result r = runNotebooks(dir.resolve("out"), List.of(throwing, noImage, committed), dir,
        Duration.ofMinutes(5));
    assertThat(r.code()).as(r.out() + r.err()).isEqualTo(1);
    List<String> lines = r.out().lines().filter(l -> !l.isBlank()).toList();
    assertThat(lines.stream().filter(l -> l.startsWith("throws.ipynb: FAILED after ")).findFirst())
        .hasValueSatisfying(l -> assertThat(l).contains("cell 0 raised ").contains("AssertionError")
            .contains("accuracy 0.5 < 0.84"));
    assertThat(r.out()).contains("no-image.ipynb: FAILED after ")
        .contains("cell 0 (tagged 'image') shows no image/png output");
    assertThat(r.out()).contains("committed.ipynb: FAILED: cells [0] carry outputs in the repository (clear them "
        + "before committing)");
    assertThat(lines.get(lines.size() - 1)).isEqualTo("notebooks: 0 passed, 3 failed");
  }

  private Path notebook(String name, String cell) throws Exception {
    Path p = dir.resolve(name);
    Files.writeString(p, """
        {"nbformat": 4, "nbformat_minor": 5,
         "metadata": {"kernelspec": {"name": "java", "display_name": "Java (jjava)", "language": "java"}},
         "cells": [%s]}
        """.formatted(cell));
    return p;
  }
}
