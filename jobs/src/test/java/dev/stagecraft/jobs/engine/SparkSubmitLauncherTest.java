package dev.stagecraft.jobs.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The launcher's own housekeeping (launches themselves run in MixedPlacementIT, against a real cluster). */
class SparkSubmitLauncherTest {
  @TempDir Path tmp;

  @Test
  void foldersOfLaunchingProcessesThatAreGoneAreRemovedOthersKept() throws Exception {
    Process gone = new ProcessBuilder("true").start();
    gone.waitFor();
    Path dead = Files.createDirectory(tmp.resolve(SparkSubmitLauncher.TEMP_PREFIX + gone.pid() + "-123"));
    Files.writeString(dead.resolve("spark.properties"), "spark.hadoop.fs.s3a.secret.key=hunter2\n");
    Path live = Files.createDirectory(tmp.resolve(SparkSubmitLauncher.TEMP_PREFIX + ProcessHandle.current().pid()
        + "-456"));
    Files.writeString(live.resolve("spark.properties"), "x=y\n");
    Path unrelated = Files.createDirectory(tmp.resolve(SparkSubmitLauncher.TEMP_PREFIX + "notapid"));

    SparkSubmitLauncher.removeLeftovers(tmp);

    assertThat(dead).as("a SIGKILLed launcher's settings do not outlive it").doesNotExist();
    assertThat(live.resolve("spark.properties")).as("a live launch keeps its files").exists();
    assertThat(unrelated).as("names this launcher never makes are left alone").exists();
  }
}
