package dev.stagecraft.jobs.engine;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.spark.SparkPolicies;
import dev.stagecraft.spi.StagecraftException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.SparkConf;
import org.apache.spark.launcher.SparkLauncher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.Tuple2;

/**
 * Launches a step as its own Spark application through Spark's launcher API ({@link SparkLauncher}, which runs a
 * Spark distribution's {@code bin/spark-submit}): same master, Stagecraft's jar, {@code stagecraft step} for the same
 * run and workspace, the step's policy as the application's resources (static executors), and the rest of this
 * application's settings. Settings travel in a properties file readable only by the user, not on the command line,
 * so credentials in {@code spark.hadoop.*} never show in a process listing. The application's output is kept in the
 * workspace; its progress lines are passed on as the step's progress.
 */
public final class SparkSubmitLauncher implements StepLauncher {
  private static final Logger LOG = LoggerFactory.getLogger(SparkSubmitLauncher.class);
  /** A plain progress line of {@code stagecraft step}: "  STEP: status, 12s". */
  private static final Pattern PROGRESS = Pattern.compile("^  ([A-Za-z0-9_.-]+): (.+), \\d+s$");
  /** Settings of this application that are not the launched one's. */
  private static final List<String> NOT_INHERITED = List.of("spark.app.", "spark.driver.port",
      "spark.executor.id", "spark.dynamicAllocation.", "spark.executor.instances", "spark.executor.cores",
      "spark.executor.memory", "spark.executor.memoryOverhead", "spark.executor.resource.", "spark.task.cpus",
      "spark.task.resource.", "spark.submit.", Settings.MASTER_CONF, "spark.jars", "spark.repl.",
      "spark.sql.warehouse.dir", "spark.ui.port", Settings.PLUGINS_CONF, Settings.RAPIDS_CONF_PREFIX,
      Settings.ALLOCATION_FILE_CONF);

  private final SparkConf parent;
  private final Optional<String> sparkHome;
  private final Optional<String> jar;

  /**
   * @param parent this application's settings (master, Hadoop and JVM settings the launched one inherits)
   * @param sparkHome a Spark distribution; empty: none (launching fails with a message saying what to set)
   * @param jar Stagecraft's jar; empty: this process does not run from it
   */
  public SparkSubmitLauncher(SparkConf parent, Optional<String> sparkHome, Optional<String> jar) {
    this.parent = requireNonNull(parent, "parent is null").clone();
    this.sparkHome = requireNonNull(sparkHome, "sparkHome is null");
    this.jar = requireNonNull(jar, "jar is null");
  }

  /**
   * For this process: the Spark distribution in {@code SPARK_HOME} (spark-submit sets it) or
   * {@code STAGECRAFT_SPARK_HOME} ({@link Settings#sparkHome}), and the jar this class was loaded from.
   */
  public static SparkSubmitLauncher forThisProcess(SparkConf conf) {
    return new SparkSubmitLauncher(conf, Settings.sparkHome(), ownJar());
  }

  /** The jar Stagecraft runs from; empty when it runs from class folders (a build's tests). */
  public static Optional<String> ownJar() {
    try {
      Path p = Path.of(
          SparkSubmitLauncher.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      if (Files.isRegularFile(p) && p.getFileName().toString().endsWith(".jar")) {
        return Optional.of(p.toString());
      }
    } catch (URISyntaxException | RuntimeException e) {
      LOG.debug("Cannot tell which jar Stagecraft runs from: {}", e.toString());
    }
    return Optional.empty();
  }

  /**
   * The launched application's settings: this one's, minus its sizing, plus the step's policy (static), and the
   * market its executors are priced at ({@link Settings#EXECUTOR_MARKET_CONF}, a {@link ResourcePolicy.Market} name).
   */
  public Map<String, String> conf(Request request) {
    Map<String, String> conf = new LinkedHashMap<>();
    for (Tuple2<String, String> kv : parent.getAll()) {
      if (NOT_INHERITED.stream().noneMatch(kv._1()::startsWith)) {
        conf.put(kv._1(), kv._2());
      }
    }
    Optional<ResourcePolicy> policy = request.policy();
    Optional<String> discovery = Optional.ofNullable(parent.get(Settings.GPU_DISCOVERY_SCRIPT_CONF, null))
        .or(() -> Optional.ofNullable(System.getenv(Settings.GPU_DISCOVERY_SCRIPT_ENV)));
    policy.ifPresent(p -> {
      conf.putAll(SparkPolicies.applicationConf(p, List.of(p), discovery));
      // Not a Spark setting: the market its executors are priced at by the launched application's cost meter.
      conf.put(Settings.EXECUTOR_MARKET_CONF, p.market().name());
    });
    conf.put("spark.dynamicAllocation.enabled", "false"); // barrier stages refuse it (SPARK-24942)
    conf.put("spark.app.name", "stagecraft " + request.spec().name() + " " + request.runId() + " "
        + request.step().id());
    return conf;
  }

  @Override
  public Launched launch(Request request, Consumer<String> progress) throws Exception {
    String id = request.step().id();
    String home = sparkHome.orElseThrow(() -> StagecraftException.user("Cannot launch step '%s' as its own Spark "
        + "application: no Spark distribution (set SPARK_HOME to one; its bin/spark-submit launches it)", id));
    String app = jar.orElseThrow(() -> StagecraftException.user("Cannot launch step '%s' as its own Spark "
        + "application: this process does not run from Stagecraft's jar (start it with bin/stagecraft or "
        + "spark-submit)", id));
    Path tmpRoot = Path.of(System.getProperty("java.io.tmpdir"));
    removeLeftovers(tmpRoot);
    Path tmp = Files.createTempDirectory(tmpRoot, TEMP_PREFIX + ProcessHandle.current().pid() + "-",
        PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
    Path props = tmp.resolve("spark.properties");
    Path out = tmp.resolve("output.log");
    long start = System.nanoTime();
    try {
      Properties p = new Properties();
      p.putAll(conf(request));
      try (OutputStream o = Files.newOutputStream(props)) {
        p.store(o, "Stagecraft: settings of step " + id + " of run " + request.runId());
      }
      Map<String, String> env = new LinkedHashMap<>();
      env.put(Settings.PARENT_LEASE_ENV, request.parentLease());
      env.put(Settings.USAGE_FILE_ENV, request.workspace().fs().makeQualified(request.usageFile()).toString());
      env.put(Settings.PREPARED_FILE_ENV,
          request.workspace().fs().makeQualified(request.preparedFile()).toString());
      env.put(Settings.PROGRESS_ENV, Settings.PROGRESS_PLAIN);
      String workflow = Path.of(request.spec().source()).toAbsolutePath().toString();
      SparkLauncher launcher = new SparkLauncher(env)
          .setSparkHome(home)
          .setAppResource(app)
          .setMainClass(Settings.MAIN_CLASS)
          .setMaster(parent.get(Settings.MASTER_CONF))
          .setDeployMode("client")
          .setPropertiesFile(props.toString())
          .addAppArgs("step", workflow, id, "--run-id", request.runId(), "--workspace",
              request.workspace().uri())
          .redirectError()
          .redirectOutput(out.toFile());
      LOG.info("Launching step '{}' of run '{}' as its own Spark application: {}/bin/spark-submit on {}", id,
          request.runId(), home, parent.get(Settings.MASTER_CONF));
      Process process = launcher.launch();
      Thread tail = new Thread(() -> follow(out, id, process, progress), "stagecraft-launch-" + id);
      tail.setDaemon(true);
      tail.start();
      int exit;
      try {
        exit = process.waitFor();
      } catch (InterruptedException e) {
        process.destroy(); // spark-submit's driver stops its SparkContext on SIGTERM
        if (!process.waitFor(30, TimeUnit.SECONDS)) {
          process.destroyForcibly();
        }
        throw e;
      } finally {
        tail.join(5_000);
      }
      String log = keep(request, out);
      return new Launched(exit, home + "/bin/spark-submit", log, (System.nanoTime() - start) / 1e9);
    } finally {
      try (var files = Files.list(tmp)) {
        for (Path f : (Iterable<Path>) files::iterator) {
          Files.deleteIfExists(f);
        }
      }
      Files.deleteIfExists(tmp);
    }
  }

  /** Names this launcher's temporary folders: the prefix, the launching process's pid, a dash, a random suffix. */
  static final String TEMP_PREFIX = "stagecraft-launch-";

  private static final Pattern LEFTOVER =
      Pattern.compile(Pattern.quote(TEMP_PREFIX) + "(\\d+)-.*");

  /**
   * Deletes the temporary folders (a launch's properties file and output) that launching processes left behind when
   * they were killed before their own clean-up: those whose pid is no longer alive on this host. A folder of a live
   * process — or of a reused pid — is left alone: the safe side.
   */
  static void removeLeftovers(Path tmpRoot) {
    try (var dirs = Files.newDirectoryStream(tmpRoot, TEMP_PREFIX + "*")) {
      for (Path dir : dirs) {
        Matcher m = LEFTOVER.matcher(dir.getFileName().toString());
        if (m.matches() && ProcessHandle.of(Long.parseLong(m.group(1))).isEmpty()) {
          LOG.info("Removing {}, left behind by a launching process that is gone", dir);
          LocalDirs.deleteTree(dir);
        }
      }
    } catch (IOException | RuntimeException e) {
      LOG.warn("Cannot remove leftover launch folders in {}: {}", tmpRoot, e.toString());
    }
  }

  /** Passes the application's progress lines on while it runs (reads the growing file line by line). */
  private static void follow(Path out, String id, Process process, Consumer<String> progress) {
    try {
      while (!Files.exists(out) && process.isAlive()) {
        Thread.sleep(100);
      }
      try (InputStream in = Files.newInputStream(out)) {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        while (true) {
          int n = in.read(buf);
          if (n < 0) {
            if (!process.isAlive()) {
              return;
            }
            Thread.sleep(200);
            continue;
          }
          for (int i = 0; i < n; i++) {
            if (buf[i] != '\n') {
              line.write(buf[i]);
              continue;
            }
            Matcher m = PROGRESS.matcher(line.toString(StandardCharsets.UTF_8));
            if (m.matches() && m.group(1).equals(id)) {
              progress.accept(m.group(2));
            }
            line.reset();
          }
        }
      }
    } catch (IOException e) {
      LOG.debug("Stopped following the output of step '{}': {}", id, e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Copies the application's output into the workspace; returns where it is. */
  private static String keep(Request request, Path out) {
    FileSystem fs = request.workspace().fs();
    try {
      fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(out.toUri()), request.logFile());
      return fs.makeQualified(request.logFile()).toString();
    } catch (IOException e) {
      LOG.warn("Cannot keep the output of step '{}' in {}: {}", request.step().id(), request.logFile(),
          e.toString());
      return "(lost: " + e.getMessage() + ")";
    }
  }
}
