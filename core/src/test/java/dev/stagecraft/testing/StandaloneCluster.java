package dev.stagecraft.testing;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.spark.sql.SparkSession;

/**
 * A real Spark standalone cluster for tests: a Master and N Workers, each its own JVM started from the Maven jars
 * (no Spark distribution needed), every Worker advertising fake GPUs through a discovery script. The driver is the
 * test JVM.
 *
 * <p>SPARK_HOME is a folder whose {@code jars/} links the jars Maven resolved for Spark (the module's
 * {@code target/spark-classpath.txt}); Workers need it and {@code SPARK_SCALA_VERSION} to build executor commands.
 * Executors get the test JVM's classpath (our classes, test classes, DJL…) through {@code extraClassPath}.
 */
public final class StandaloneCluster implements AutoCloseable {
  private final Path home;
  private final Process master;
  private final List<Process> workers = new ArrayList<>();
  private final int masterPort;
  private final int masterWebPort;

  private StandaloneCluster(Path home, Process master, int masterPort, int masterWebPort) {
    this.home = home;
    this.master = master;
    this.masterPort = masterPort;
    this.masterWebPort = masterWebPort;
  }

  /**
   * Starts a master and {@code workers} workers with {@code cores} cores each; worker i advertises GPU addresses
   * {@code i*gpus … i*gpus+gpus-1} (so every GPU in the cluster has a distinct address).
   */
  public static StandaloneCluster start(Path dir, int workers, int cores, int gpus) throws Exception {
    Path home = dir.resolve("spark-home");
    Path jars = home.resolve("jars");
    Files.createDirectories(jars);
    Files.createDirectories(home.resolve("conf"));
    for (String jar : Files.readString(Path.of(System.getProperty("stagecraft.spark.classpath"))).trim().split(":")) {
      Path src = Path.of(jar);
      Path link = jars.resolve(src.getFileName());
      if (!Files.exists(link)) {
        Files.createSymbolicLink(link, src);
      }
    }
    int port = freePort();
    int web = freePort();
    Process master = launch(home, dir.resolve("master.log"), List.of(),
        "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", String.valueOf(port),
        "--webui-port", String.valueOf(web));
    StandaloneCluster cluster = new StandaloneCluster(home, master, port, web);
    try {
      for (int i = 0; i < workers; i++) {
        List<String> props = new ArrayList<>();
        if (gpus > 0) {
          List<String> addresses = new ArrayList<>();
          for (int g = 0; g < gpus; g++) {
            addresses.add("\"" + (i * gpus + g) + "\"");
          }
          Path script = dir.resolve("gpus-" + i + ".sh");
          Files.writeString(script, "#!/usr/bin/env bash\necho '{\"name\":\"gpu\",\"addresses\":["
              + String.join(",", addresses) + "]}'\n");
          Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
          props.add("-Dspark.worker.resource.gpu.amount=" + gpus);
          props.add("-Dspark.worker.resource.gpu.discoveryScript=" + script);
        }
        Path workDir = dir.resolve("worker-" + i);
        Files.createDirectories(workDir);
        cluster.workers.add(launch(home, dir.resolve("worker-" + i + ".log"), props,
            "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", String.valueOf(cores),
            "--memory", "2g", "--webui-port", String.valueOf(freePort()), "--work-dir", workDir.toString(),
            cluster.masterUrl()));
      }
      cluster.awaitWorkers(workers, Duration.ofSeconds(90));
      return cluster;
    } catch (Exception e) {
      cluster.close();
      throw e;
    }
  }

  public String masterUrl() {
    return "spark://127.0.0.1:" + masterPort;
  }

  /**
   * A session builder for this cluster: executors with {@code executorCores} cores and one GPU each (if the workers
   * have GPUs), the test classpath, Java 17 flags, and quick barrier slot checks.
   */
  public SparkSession.Builder session(String app, int executorCores, boolean gpus) {
    String flags = System.getProperty("stagecraft.jvm.flags", "").trim();
    SparkSession.Builder b = SparkSession.builder()
        .master(masterUrl())
        .appName(app)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.executor.cores", String.valueOf(executorCores))
        .config("spark.executor.memory", "1g")
        .config("spark.executor.extraClassPath", testClassPath())
        .config("spark.executor.extraJavaOptions", flags)
        .config("spark.sql.shuffle.partitions", "2")
        // SPARK-24819: a barrier stage waits for free slots; fail fast instead of 40 × 15 s.
        .config("spark.scheduler.barrier.maxConcurrentTasksCheck.interval", "1s")
        .config("spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures", "10");
    if (gpus) {
      b.config("spark.executor.resource.gpu.amount", "1").config("spark.task.resource.gpu.amount", "1");
    }
    return b;
  }

  /**
   * Waits until {@code n} executors have registered with the session's driver. A job that starts earlier runs all its
   * tasks on the executors already there (seen on Spark 4.2, whose executors register later than 3.5's).
   */
  public static void awaitExecutors(SparkSession spark, int n, Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    // getExecutorInfos() includes the driver.
    while (spark.sparkContext().statusTracker().getExecutorInfos().length - 1 < n) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException(n + " executors did not register within " + timeout + " (registered: "
            + (spark.sparkContext().statusTracker().getExecutorInfos().length - 1) + ")");
      }
      Thread.sleep(100);
    }
  }

  /** The pids of running executor JVMs (CoarseGrainedExecutorBackend) launched by this cluster's workers. */
  public List<ProcessHandle> executors() {
    List<ProcessHandle> out = new ArrayList<>();
    for (Process w : workers) {
      w.descendants().filter(p -> commandLine(p).contains("CoarseGrainedExecutorBackend")).forEach(out::add);
    }
    return out;
  }

  /** The full command line (ProcessHandle.Info gives up on command lines as long as an executor's classpath). */
  private static String commandLine(ProcessHandle p) {
    try {
      return Files.readString(Path.of("/proc/" + p.pid() + "/cmdline")).replace('\0', ' ');
    } catch (IOException e) {
      return p.info().commandLine().orElse("");
    }
  }

  /** Polls the master's JSON status until {@code n} workers are ALIVE. */
  private void awaitWorkers(int n, Duration timeout) throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    long deadline = System.nanoTime() + timeout.toNanos();
    Pattern alive = Pattern.compile("\"state\"\\s*:\\s*\"ALIVE\"");
    String last = "";
    while (System.nanoTime() < deadline) {
      if (!master.isAlive()) {
        throw new IllegalStateException("Spark master exited: see " + home.getParent().resolve("master.log"));
      }
      try {
        last = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + masterWebPort + "/json/")).build(),
            HttpResponse.BodyHandlers.ofString()).body();
        int count = 0;
        Matcher m = alive.matcher(last.substring(0, Math.max(0, Optional.of(last.indexOf("\"activeapps\""))
            .filter(i -> i >= 0).orElse(last.length()))));
        while (m.find()) {
          count++;
        }
        if (count >= n) {
          return;
        }
      } catch (IOException e) {
        // not up yet
      }
      Thread.sleep(250);
    }
    throw new IllegalStateException("Spark workers did not register within " + timeout + ": " + last);
  }

  private static Process launch(Path home, Path log, List<String> props, String mainClass, String... args)
      throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("-Xmx512m");
    cmd.addAll(props);
    cmd.add("-cp");
    // The module's test classpath too: a module may compile-scope a jar that Spark also needs (e.g. jackson-core in
    // jobs), which then is missing from its provided-scope spark-classpath.txt.
    cmd.add(home.resolve("conf") + ":" + home.resolve("jars") + "/*:" + testClassPath());
    cmd.add(mainClass);
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put("SPARK_HOME", home.toString());
    // "2.12" or "2.13": the Scala this JVM's Spark was built with.
    pb.environment().put("SPARK_SCALA_VERSION", scalaBinaryVersion());
    pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
    return pb.start();
  }

  /** "2.12" or "2.13": the Scala that this JVM's Spark was built with. */
  static String scalaBinaryVersion() {
    return scala.util.Properties.versionNumberString().replaceAll("^(\\d+\\.\\d+).*", "$1");
  }

  /** The test JVM's class path: what the cluster's executors need besides Spark's jars. */
  public static String testClassPath() {
    return System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /** Stops workers (and their executors) and the master; waits for them to exit. */
  @Override
  public void close() {
    List<Process> all = new ArrayList<>(workers);
    all.add(master);
    for (Process p : all) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroy();
    }
    for (Process p : all) {
      try {
        if (!p.waitFor(20, java.util.concurrent.TimeUnit.SECONDS)) {
          p.destroyForcibly();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        p.destroyForcibly();
      }
    }
  }
}
