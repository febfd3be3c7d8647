package dev.stagecraft.jobs.bench;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.SparkSubmitLauncher;
import dev.stagecraft.spi.StagecraftException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Stagecraft's shaded jar spark-submitted from a Spark distribution, as a user runs it: for the benchmarks that time
 * whole applications (JVM start, SparkSession, the run, the ledger and cost report written) rather than a step inside
 * the benchmark's own application.
 *
 * @param sparkHome the distribution ({@code SPARK_HOME}, else {@code STAGECRAFT_SPARK_HOME}; bin/stagecraft sets the
 *     latter to bin/spark-dist's for the benchmarks that need one)
 * @param jar Stagecraft's own jar, the one this JVM runs from
 */
record Submitted(String sparkHome, String jar) {

  /** The distribution and jar of this process; a clear error naming what is missing when either is. */
  static Submitted find(String bench) {
    String home = Settings.sparkHome().orElseThrow(() -> StagecraftException.user(
        "bench %s spark-submits Stagecraft's jar: set %s or %s to a Spark distribution (bin/stagecraft does, with "
            + "bin/spark-dist)", bench, Settings.SPARK_HOME_ENV, Settings.STAGECRAFT_SPARK_HOME_ENV));
    String jar = SparkSubmitLauncher.ownJar().orElseThrow(() -> StagecraftException.user(
        "bench %s spark-submits Stagecraft's jar: run it with bin/stagecraft (this JVM does not run from a jar)",
        bench));
    return new Submitted(home, jar);
  }

  /**
   * What one application cost: wall seconds from spark-submit's start to its exit; CPU seconds of every process it
   * started and waited for (spark-submit's launcher and the driver JVM, from this process's children's times); the
   * driver's peak RSS (its VmHWM, sampled until it exits).
   */
  record Usage(double seconds, double cpuSeconds, double peakRssMb) {}

  /**
   * Runs {@code spark-submit --master MASTER [OPTIONS…] --class Main JAR ARGS…}, output to {@code log}, and returns
   * what it cost. A non-zero exit fails the benchmark, naming the log. One at a time: the CPU figure is this
   * process's children's.
   */
  Usage run(String master, List<String> options, List<String> args, Path log) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(Path.of(sparkHome, "bin/spark-submit").toString(), "--master", master,
        "--conf", Settings.UI_ENABLED_CONF + "=false", "--conf", Settings.DRIVER_HOST_CONF + "=127.0.0.1"));
    cmd.addAll(options);
    cmd.addAll(List.of("--class", Settings.MAIN_CLASS, jar));
    cmd.addAll(args);
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put(Settings.SPARK_HOME_ENV, sparkHome);
    pb.environment().put(Settings.SPARK_LOCAL_IP_ENV, "127.0.0.1");
    pb.environment().put(Settings.PROGRESS_ENV, Settings.PROGRESS_PLAIN);
    double cpu0 = Procs.childrenCpuSeconds();
    long t = System.nanoTime();
    Process p = pb.start();
    double peak = 0;
    // spark-submit execs spark-class, which execs the driver's JVM: the same pid throughout.
    Path status = Path.of("/proc/" + p.pid() + "/status");
    while (!p.waitFor(200, TimeUnit.MILLISECONDS)) {
      peak = Math.max(peak, Procs.peakRssMb(status));
    }
    double seconds = (System.nanoTime() - t) / 1e9;
    if (p.exitValue() != 0) {
      throw new IllegalStateException("spark-submit " + String.join(" ", args) + " failed with exit code "
          + p.exitValue() + "; its output: " + log);
    }
    return new Usage(seconds, Procs.childrenCpuSeconds() - cpu0, peak);
  }
}
