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
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
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
 *
 * <p>On loopback ({@link #start(Path, int, int, int)}) every JVM listens on 127.0.0.1. On a {@link HostNetwork}
 * ({@link #start(Path, HostNetwork, HostNetwork.Host, List, int, int)}) the master and each worker run in a host of
 * their own, and the driver is a JVM started in yet another host ({@link #driverCommand}), so that a fault on one
 * host's link cuts exactly what it would cut on a real cluster.
 */
public final class StandaloneCluster implements AutoCloseable {
  private static final String LOOPBACK = "127.0.0.1";
  private static final String REGISTERED = "Successfully registered with master";

  private final Path home;
  private final HostNetwork net;
  private final String masterAddress;
  private final List<Path> workerLogs = new ArrayList<>();
  private final List<Process> workers = new ArrayList<>();
  private Process master;
  private int masterPort;
  private int masterWebPort;

  private StandaloneCluster(Path home, HostNetwork net, String masterAddress) {
    this.home = home;
    this.net = net;
    this.masterAddress = masterAddress;
  }

  /**
   * Starts a master and {@code workers} workers with {@code cores} cores each; worker i advertises GPU addresses
   * {@code i*gpus … i*gpus+gpus-1} (so every GPU in the cluster has a distinct address).
   */
  public static StandaloneCluster start(Path dir, int workers, int cores, int gpus) throws Exception {
    List<HostNetwork.Host> none = new ArrayList<>();
    for (int i = 0; i < workers; i++) {
      none.add(null);
    }
    return start(dir, null, null, none, cores, gpus);
  }

  /**
   * Starts the master in host {@code master} and worker i in {@code workers.get(i)} of {@code net} (GPU addresses as
   * in {@link #start(Path, int, int, int)}); with a null {@code net}, everything on loopback.
   */
  public static StandaloneCluster start(Path dir, HostNetwork net, HostNetwork.Host master,
      List<HostNetwork.Host> workers, int cores, int gpus) throws Exception {
    Path home = sparkHome(dir);
    StandaloneCluster cluster = new StandaloneCluster(home, net, net == null ? LOOPBACK : master.address());
    // On hosts, the namespace is the master's alone: Spark's usual ports are free there.
    cluster.masterPort = net == null ? freePort() : 7077;
    cluster.masterWebPort = net == null ? freePort() : 8080;
    try {
      cluster.master = cluster.launch(master, dir.resolve("master.log"), List.of(),
          "org.apache.spark.deploy.master.Master", "--host", cluster.masterAddress, "--port",
          String.valueOf(cluster.masterPort), "--webui-port", String.valueOf(cluster.masterWebPort));
      for (int i = 0; i < workers.size(); i++) {
        HostNetwork.Host host = workers.get(i);
        List<String> props = new ArrayList<>();
        if (gpus > 0) {
          props.add("-Dspark.worker.resource.gpu.amount=" + gpus);
          props.add("-Dspark.worker.resource.gpu.discoveryScript=" + gpuScript(dir, i, gpus));
        }
        Path workDir = dir.resolve("worker-" + i);
        Files.createDirectories(workDir);
        Path log = dir.resolve("worker-" + i + ".log");
        cluster.workerLogs.add(log);
        cluster.workers.add(cluster.launch(host, log, props, "org.apache.spark.deploy.worker.Worker", "--host",
            host == null ? LOOPBACK : host.address(), "--cores", String.valueOf(cores), "--memory", "2g",
            "--webui-port", String.valueOf(net == null ? freePort() : 8081), "--work-dir", workDir.toString(),
            cluster.masterUrl()));
      }
      cluster.awaitWorkers(workers.size(), Duration.ofSeconds(90));
      return cluster;
    } catch (Exception e) {
      cluster.close();
      throw e;
    }
  }

  /** A SPARK_HOME whose {@code jars/} links the jars Maven resolved for Spark. */
  private static Path sparkHome(Path dir) throws IOException {
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
    return home;
  }

  /** A discovery script reporting worker {@code i}'s fake GPU addresses {@code i*gpus … i*gpus+gpus-1}. */
  private static Path gpuScript(Path dir, int i, int gpus) throws IOException {
    List<String> addresses = new ArrayList<>();
    for (int g = 0; g < gpus; g++) {
      addresses.add("\"" + (i * gpus + g) + "\"");
    }
    Path script = dir.resolve("gpus-" + i + ".sh");
    Files.writeString(script, "#!/usr/bin/env bash\necho '{\"name\":\"gpu\",\"addresses\":["
        + String.join(",", addresses) + "]}'\n");
    Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
    return script;
  }

  public String masterUrl() {
    return "spark://" + masterAddress + ":" + masterPort;
  }

  /**
   * A session builder for this cluster, whose driver is this JVM (loopback only): executors with
   * {@code executorCores} cores and one GPU each (if the workers have GPUs), the test classpath, Java 17 flags, and
   * quick barrier slot checks.
   */
  public SparkSession.Builder session(String app, int executorCores, boolean gpus) {
    if (net != null) {
      throw new IllegalStateException("The driver of a cluster on hosts runs in a host of its own: driverCommand");
    }
    SparkSession.Builder b = SparkSession.builder().master(masterUrl()).appName(app);
    driverConf(LOOPBACK, executorCores, gpus).forEach(b::config);
    return b;
  }

  /** The Spark settings of a driver at {@code address} (see {@link #session}). */
  public Map<String, String> driverConf(String address, int executorCores, boolean gpus) {
    Map<String, String> conf = new LinkedHashMap<>();
    conf.put("spark.master", masterUrl());
    conf.put("spark.driver.host", address);
    conf.put("spark.driver.bindAddress", address);
    conf.put("spark.ui.enabled", "false");
    conf.put("spark.executor.cores", String.valueOf(executorCores));
    conf.put("spark.executor.memory", "1g");
    conf.put("spark.executor.extraClassPath", testClassPath());
    conf.put("spark.executor.extraJavaOptions", System.getProperty("stagecraft.jvm.flags", "").trim());
    conf.put("spark.sql.shuffle.partitions", "2");
    // SPARK-24819: a barrier stage waits for free slots; fail fast instead of 40 × 15 s.
    conf.put("spark.scheduler.barrier.maxConcurrentTasksCheck.interval", "1s");
    conf.put("spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures", "10");
    if (gpus) {
      conf.put("spark.executor.resource.gpu.amount", "1");
      conf.put("spark.task.resource.gpu.amount", "1");
    }
    return conf;
  }

  /**
   * The command of a driver JVM in {@code host} of this cluster's network: {@code mainClass args} with the Spark
   * jars and the test classpath, {@link #driverConf} plus {@code conf} as system properties (SparkConf reads
   * {@code spark.*} ones), the Java 17 flags the tests use.
   */
  public List<String> driverCommand(HostNetwork.Host host, Map<String, String> conf, String mainClass,
      List<String> args) {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("-Xmx1g");
    for (String flag : System.getProperty("stagecraft.jvm.flags", "").trim().split("\\s+")) {
      if (!flag.isEmpty()) {
        cmd.add(flag);
      }
    }
    Map<String, String> all = new LinkedHashMap<>(driverConf(host.address(), 1, false));
    all.putAll(conf);
    all.forEach((k, v) -> cmd.add("-D" + k + "=" + v));
    cmd.add("-cp");
    cmd.add(home.resolve("conf") + ":" + home.resolve("jars") + "/*:" + testClassPath());
    cmd.add(mainClass);
    cmd.addAll(args);
    return net.command(host, cmd);
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

  /**
   * Polls the master's JSON status until {@code n} workers are ALIVE; on hosts, whose addresses this JVM cannot reach,
   * the workers' logs instead.
   */
  private void awaitWorkers(int n, Duration timeout) throws Exception {
    if (net != null) {
      awaitRegisteredInLogs(timeout);
      return;
    }
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

  private void awaitRegisteredInLogs(Duration timeout) throws Exception {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline) {
      if (!master.isAlive()) {
        throw new IllegalStateException("Spark master exited: see " + home.getParent().resolve("master.log"));
      }
      long registered = 0;
      for (Path log : workerLogs) {
        if (Files.exists(log) && Files.readString(log).contains(REGISTERED)) {
          registered++;
        }
      }
      if (registered == workerLogs.size()) {
        return;
      }
      Thread.sleep(250);
    }
    throw new IllegalStateException("Spark workers did not register within " + timeout + ": see " + workerLogs);
  }

  private Process launch(HostNetwork.Host host, Path log, List<String> props, String mainClass, String... args)
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
    ProcessBuilder pb = new ProcessBuilder(host == null ? cmd : net.command(host, cmd)).redirectErrorStream(true)
        .redirectOutput(log.toFile());
    pb.environment().put("SPARK_HOME", home.toString());
    // "2.12" or "2.13": the Scala this JVM's Spark was built with.
    pb.environment().put("SPARK_SCALA_VERSION", scalaBinaryVersion());
    pb.environment().put("SPARK_LOCAL_IP", host == null ? LOOPBACK : host.address());
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

  /** The worker processes, in order (their executors are their descendants). */
  public List<Process> workers() {
    return List.copyOf(workers);
  }

  /** Stops workers (and their executors) and the master; waits for them to exit. */
  @Override
  public void close() {
    List<Process> all = new ArrayList<>(workers);
    if (master != null) {
      all.add(master);
    }
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
