package dev.stagecraft.jobs.spark;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.engine.Placement;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.spark.SparkPolicies;
import java.io.IOException;
import java.net.URI;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configuration;
import org.apache.logging.log4j.core.config.Configurator;
import org.apache.logging.log4j.core.config.DefaultConfiguration;
import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;
import org.slf4j.LoggerFactory;

/**
 * The Spark application of a {@code stagecraft} process: its SparkSession (the CLI, benchmarks), the settings a
 * workflow's policies ask of it, where each step runs, and console logging (notebooks' too). Under spark-submit the
 * master and settings come from spark-submit; run embedded (bin/stagecraft, a notebook), the master defaults to
 * {@code local[*]}.
 */
public final class SparkSessions {
  private SparkSessions() {}

  /**
   * Quiet console logging unless {@code verbose} — only when nobody configured log4j2 (a {@code log4j2.properties} on
   * the classpath, as a Spark distribution's {@code conf/} has, or {@code -Dlog4j2.configurationFile}) — so a
   * cluster's logging setup is always respected. Must run before Spark logs anything.
   */
  public static void configureLogging(boolean verbose) {
    LoggerContext ctx = (LoggerContext) LogManager.getContext(false);
    Configuration current = ctx.getConfiguration();
    String location = current.getConfigurationSource() == null ? null
        : current.getConfigurationSource().getLocation();
    boolean sparkDefaults = location != null && location.endsWith("org/apache/spark/log4j2-defaults.properties");
    boolean ours = location != null && location.contains("dev/stagecraft/jobs/log4j2-");
    boolean userConfigured = System.getProperty("log4j2.configurationFile") != null
        || !(current instanceof DefaultConfiguration || sparkDefaults || ours);
    if (userConfigured) {
      return;
    }
    String name = verbose ? "log4j2-verbose.properties" : "log4j2-quiet.properties";
    URL config = SparkSessions.class.getResource("/dev/stagecraft/jobs/" + name);
    if (config != null) {
      Configurator.reconfigure(URI.create(config.toString()));
    }
  }

  public static SparkSession create(String appName, boolean verbose) {
    return create(appName, verbose, Map.of());
  }

  /**
   * The session for a workflow: {@code policyConf} (from its resource policies, {@link #policyConf}) fills in what
   * spark-submit and {@code -Dspark.*} did not set — explicit settings win.
   */
  public static SparkSession create(String appName, boolean verbose, Map<String, String> policyConf) {
    configureLogging(verbose);
    SparkConf conf = new SparkConf(); // reads spark.* system properties (set by spark-submit)
    SparkSession.Builder builder = SparkSession.builder().appName(appName);
    if (!conf.contains(Settings.MASTER_CONF)) {
      builder.master(Settings.MASTER_DEFAULT);
    }
    policyConf.forEach((k, v) -> {
      if (!conf.contains(k)) {
        builder.config(k, v);
      }
    });
    if (!conf.contains(Settings.SCHEDULER_MODE_CONF)) {
      // Independent steps run concurrently, each in its own pool; FIFO would queue them.
      builder.config(Settings.SCHEDULER_MODE_CONF, Settings.SCHEDULER_MODE_DEFAULT);
    }
    if (!verbose && !conf.contains(Settings.CONSOLE_PROGRESS_CONF)) {
      // Stagecraft prints its own progress.
      builder.config(Settings.CONSOLE_PROGRESS_CONF, Settings.CONSOLE_PROGRESS_DEFAULT);
    }
    return builder.getOrCreate();
  }

  /** The master this process's application runs on: spark-submit's or {@code -Dspark.master}, else local. */
  public static String master() {
    return new SparkConf().get(Settings.MASTER_CONF, Settings.MASTER_DEFAULT);
  }

  /** Where {@code spec}'s steps run on this process's master ({@link Placement}). */
  public static Placement placement(WorkflowSpec spec, StepKinds kinds) {
    return Placement.of(spec, master(), s -> kinds.get(s.kind()).barrier());
  }

  /** {@link #policyConf(WorkflowSpec, Placement)} with the placement of the built-in step kinds. */
  public static Map<String, String> policyConf(WorkflowSpec spec) {
    StepKinds kinds = StepKinds.discover();
    return policyConf(spec, placement(spec, kinds));
  }

  /**
   * Application settings from the policies a workflow's steps name (none if no step names one). In local mode only
   * the FAIR pools' allocation file applies (one JVM: nothing to size or allocate; the engine logs what each policy
   * ignores). On a cluster the steps that {@code placement} runs as their own application do not size this one. The
   * RAPIDS plugin is left out, with a log line, when its jar is not on the classpath.
   */
  public static Map<String, String> policyConf(WorkflowSpec spec, Placement placement) {
    List<ResourcePolicy> all = spec.steps().stream()
        .map(spec::policyOf).flatMap(Optional::stream).distinct().toList();
    List<ResourcePolicy> used = placement.inAppPolicies(spec);
    Map<String, String> out = new LinkedHashMap<>();
    if (all.isEmpty()) {
      return out;
    }
    try {
      Path xml = Files.createTempFile("stagecraft-pools-", ".xml");
      xml.toFile().deleteOnExit();
      Files.writeString(xml, SparkPolicies.fairSchedulerXml(all));
      out.put(Settings.ALLOCATION_FILE_CONF, xml.toString());
    } catch (IOException e) {
      LoggerFactory.getLogger(SparkSessions.class).warn(
          "Cannot write the FAIR scheduler allocation file (pools keep weight 1): {}", e.toString());
    }
    if (master().startsWith("local") || used.isEmpty()) {
      return out;
    }
    ResourcePolicy base = SparkPolicies.basePolicy(used).orElseThrow();
    out.putAll(SparkPolicies.applicationConf(base, used,
        Optional.ofNullable(System.getenv(Settings.GPU_DISCOVERY_SCRIPT_ENV))));
    if (out.containsKey(Settings.PLUGINS_CONF)) {
      try {
        Class.forName(SparkPolicies.RAPIDS_PLUGIN, false, SparkSessions.class.getClassLoader());
      } catch (ClassNotFoundException e) {
        LoggerFactory.getLogger(SparkSessions.class).info("A policy enables RAPIDS but its jar is not on "
            + "the classpath (bin/fetch-rapids): the steps run on the CPU");
        out.remove(Settings.PLUGINS_CONF);
        out.keySet().removeIf(k -> k.startsWith(Settings.RAPIDS_CONF_PREFIX));
      }
    }
    return out;
  }
}
