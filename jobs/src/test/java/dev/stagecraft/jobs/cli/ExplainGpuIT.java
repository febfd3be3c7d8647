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
 * {@code stagecraft explain-gpu} on the example workflow, with the RAPIDS Accelerator jar that bin/test fetches
 * (bin/fetch-rapids): the infer step's preprocessing must have no operator RAPIDS would leave on the CPU.
 */
class ExplainGpuIT {
  @TempDir Path dir;

  @Test
  void theExampleWorkflowsPreprocessingRunsEntirelyOnTheGpu() throws Exception {
    Path rapids = Path.of(System.getProperty("stagecraft.rapids.jar"));
    assertThat(rapids).as("the RAPIDS jar: run bin/fetch-rapids (bin/test does)").exists();
    Path root = Path.of(System.getProperty("stagecraft.repo.root"));
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(Arrays.asList(System.getProperty("stagecraft.jvm.flags").trim().split("\\s+")));
    cmd.addAll(List.of("-Xmx3g", "-Dspark.master=local[2]", "-Dspark.ui.enabled=false", "-cp",
        System.getProperty("stagecraft.shaded.jar") + File.pathSeparator
            + Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim()
            + File.pathSeparator + rapids,
        "dev.stagecraft.jobs.Main", "explain-gpu", root.resolve("jobs/examples/a9a/workflow.yaml").toString(),
        "--workspace", dir.resolve("ws").toUri().toString()));
    Path out = dir.resolve("out.txt");
    Path err = dir.resolve("err.txt");
    Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectOutput(out.toFile())
        .redirectError(err.toFile()).start();
    assertThat(p.waitFor(600, TimeUnit.SECONDS)).as("explain-gpu finished").isTrue();
    String text = Files.readString(out);
    assertThat(p.exitValue()).as(Files.readString(err)).isZero();
    assertThat(text).contains("GPU plans (RAPIDS Accelerator, explain-only):")
        .contains("step score: every operator would run on the GPU")
        .contains("*Exec <ProjectExec> will run on GPU");
    // The report does say no where it is no: MLlib vectors are a JVM type RAPIDS cannot handle.
    assertThat(text).containsPattern("step test_set: \\d+ operator\\(s\\)/expression\\(s\\) would stay on the CPU")
        .contains("unsupported data types in input: org.apache.spark.ml.linalg.VectorUDT");
  }
}
