package dev.stagecraft.jobs.bench;

import dev.stagecraft.jobs.cli.Verbosity;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.LocalDirs;
import dev.stagecraft.jobs.spark.SparkSessions;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.spark.sql.SparkSession;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code stagecraft bench NAME}: measures one thing against its baseline (and the physical limit, where one exists)
 * in the same run, and prints one JSON object per result on stdout ({@link Results}); logs go to stderr. Absolute
 * times are reported, never asserted.
 *
 * <p>No Jackson or Spark type may appear in this class's fields or method signatures: picocli reflects over them
 * when it builds the command line, and `--help` must work on a plain JVM (Spark and Jackson are provided).
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
    description = "Benchmarks (JSON lines on stdout): allreduce, train-scaling, train-vs-mllib, checkpoint, inference, "
        + "inference-peers, train-peers, cost, schedule, pipeline.")
public final class Bench implements Callable<Integer> {
  static final List<String> NAMES =
      List.of("allreduce", "train-scaling", "train-vs-mllib", "checkpoint", "inference", "inference-peers",
          "train-peers", "cost", "schedule", "pipeline");

  @Parameters(index = "0", paramLabel = "NAME",
      description = "allreduce | train-scaling | train-vs-mllib | checkpoint | inference | inference-peers | "
          + "train-peers | cost | schedule | pipeline")
  String name;

  @Option(names = "--size", paramLabel = "X", defaultValue = "1",
      description = "Scale the default sizes by X (default 1: a few minutes on 2 cores).")
  double size;

  @Option(names = "--workers", paramLabel = "N",
      description = "Workers (barrier tasks; default 2, allreduce: 2, 3 and 4; pipeline: the stages, at least 2).")
  Integer workersGiven;

  @Option(names = "--reps", paramLabel = "N", defaultValue = "5", description = "Timed repetitions per point.")
  int reps;

  @Option(names = "--integrity", paramLabel = "MODE", split = ",",
      description = "allreduce: frame integrity modes to measure, comma-separated (default: none,mac,encrypt); "
          + "pipeline: the mode of its links (default: the default mode).")
  List<String> integrity = new ArrayList<>();

  @Option(names = "--trace", paramLabel = "FILE",
      description = "schedule: a Gavel job trace (default: the built-in Philly-derived 0e4a51.trace).")
  Path trace;

  @Option(names = "--spot-trace", paramLabel = "FILE",
      description = "schedule: a spot availability trace, one per zone, repeatable (default: two built-in AWS zones).")
  List<Path> spotTraces = new ArrayList<>();

  @Option(names = "--cluster-gpus", paramLabel = "N", defaultValue = "0",
      description = "schedule: GPUs in the simulated cluster (default 0: the trace's peak demand).")
  int clusterGpus;

  @Option(names = "--seed", paramLabel = "N", defaultValue = "1",
      description = "schedule: where each spot trace starts (same seed, same result).")
  long seed;

  @Option(names = "--deadline-slack", paramLabel = "X", defaultValue = "1.5",
      description = "schedule: a job's deadline is its arrival plus X times its duration.")
  double deadlineSlack;

  @Spec CommandSpec spec;

  @Override
  public Integer call() throws Exception {
    if (!NAMES.contains(name)) {
      throw StagecraftException.user("Unknown benchmark '%s' (expected one of: %s)", name, String.join(", ", NAMES));
    }
    try {
      return runBench();
    } finally {
      deleteScratch();
    }
  }

  private Integer runBench() throws Exception {
    if (name.equals("cost")) { // its own cluster and applications: nothing runs in this JVM's Spark
      SparkSessions.configureLogging(Verbosity.of(spec));
      CostBench.run(Results::emit);
      return 0;
    }
    if (name.equals("schedule")) {
      // a simulation: no Spark
      ScheduleBench.run(Optional.ofNullable(trace), spotTraces, clusterGpus, seed, deadlineSlack,
          Results::emit);
      return 0;
    }
    int fewest = name.equals("allreduce") || name.equals("pipeline") ? 2 : 1;
    if (workersGiven != null && workersGiven < fewest) {
      throw StagecraftException.user("Invalid --workers %d (expected at least %d)", workersGiven, fewest);
    }
    List<Integer> rings = workersGiven == null ? AllReduceBench.DEFAULT_WORKERS : List.of(workersGiven);
    int workers = workersGiven == null ? 2 : workersGiven;
    if (name.equals("allreduce")) {
      localSlotsFor(Collections.max(rings));
    } else if (name.equals("pipeline")) {
      localSlotsFor(workers);
    }
    SparkSession spark = SparkSessions.create("stagecraft bench " + name, Verbosity.of(spec));
    try {
      switch (name) {
        case "allreduce" -> AllReduceBench.run(spark, rings, integrityModes(), size, reps, Results::emit);
        case "train-scaling" -> TrainBench.scaling(spark, workers, size, Results::emit);
        case "checkpoint" -> CheckpointBench.run(spark, workers, size, reps, Results::emit);
        case "inference" -> InferenceBench.run(spark, size, Results::emit);
        case "inference-peers" -> InferencePeersBench.run(spark, size, Results::emit);
        case "train-peers" -> TrainPeersBench.run(spark, workers, size, Results::emit);
        case "pipeline" -> PipelineBench.run(spark, workers, pipelineIntegrity(), size, Results::emit);
        default -> MllibBench.run(spark, workers, size, Results::emit);
      }
      return 0;
    } finally {
      spark.stop();
    }
  }

  /** The pipeline's one mode: the default unless {@code --integrity} names one. */
  private dev.stagecraft.training.collective.FrameIntegrity pipelineIntegrity() {
    if (integrity.isEmpty()) {
      return dev.stagecraft.training.collective.FrameIntegrity.DEFAULT;
    }
    if (integrity.size() > 1) {
      throw StagecraftException.user("Invalid --integrity %s for pipeline (expected one mode: none, mac or encrypt)",
          String.join(",", integrity));
    }
    return integrityModes().get(0);
  }

  private List<dev.stagecraft.training.collective.FrameIntegrity> integrityModes() {
    if (integrity.isEmpty()) {
      return AllReduceBench.DEFAULT_MODES;
    }
    List<dev.stagecraft.training.collective.FrameIntegrity> modes = new ArrayList<>();
    for (String m : integrity) {
      try {
        modes.add(dev.stagecraft.training.collective.FrameIntegrity.parse(m));
      } catch (IllegalArgumentException e) {
        throw StagecraftException.user("Invalid --integrity: %s", e.getMessage());
      }
    }
    return modes;
  }

  /**
   * A barrier stage needs a task slot for each of its tasks at once, and local[*] has one per core: on 2 cores the
   * allreduce points at 3 and 4 workers could not start. A local master gets at least {@code workers} slots (more
   * threads than cores: the ranks then share the cores, which the lines report as {@code cores}); a cluster master is
   * left as it is. Set as the system property that spark-submit and bin/stagecraft set, before the session exists.
   */
  private static void localSlotsFor(int workers) {
    String master = SparkSessions.master();
    Matcher local = Pattern.compile("local\\[(\\*|\\d+)]").matcher(master);
    if (!master.equals("local") && !local.matches()) {
      return;
    }
    int cores = Runtime.getRuntime().availableProcessors();
    int slots = master.equals("local") ? 1 : local.group(1).equals("*") ? cores : Integer.parseInt(local.group(1));
    if (slots < workers) {
      log("{} has {} task slot(s); using local[{}] so that {} barrier tasks can run at once on {} cores", master,
          slots, workers, workers, cores);
      System.setProperty(Settings.MASTER_CONF, "local[" + workers + "]");
    }
  }

  private static final List<Path> SCRATCH = new CopyOnWriteArrayList<>();

  /** A fresh folder for a benchmark's data (inputs, workspaces, clusters' files), deleted when the benchmark ends. */
  static Path scratch(String prefix) throws IOException {
    Path dir = Files.createTempDirectory(prefix);
    SCRATCH.add(dir);
    return dir;
  }

  private static void deleteScratch() {
    for (Path dir : SCRATCH) {
      try {
        LocalDirs.deleteTree(dir);
      } catch (IOException e) {
        log("cannot delete {}: {}", dir, e.toString());
      }
    }
    SCRATCH.clear();
  }

  /** A progress line on stderr ("{}" placeholders, as in SLF4J): stdout carries only the JSON results. */
  static void log(String format, Object... args) {
    String s = format;
    for (Object a : args) {
      s = s.replaceFirst("\\{}", Matcher.quoteReplacement(String.valueOf(a)));
    }
    System.err.println("bench: " + s);
  }

  static double median(double[] v) {
    double[] c = v.clone();
    Arrays.sort(c);
    return c.length % 2 == 1 ? c[c.length / 2] : (c[c.length / 2 - 1] + c[c.length / 2]) / 2;
  }

  static double round(double v, int digits) {
    double f = Math.pow(10, digits);
    return Math.round(v * f) / f;
  }
}
