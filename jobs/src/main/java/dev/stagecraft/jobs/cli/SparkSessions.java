package dev.stagecraft.jobs.cli;

import java.net.URL;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configurator;
import org.apache.logging.log4j.core.config.DefaultConfiguration;
import org.apache.spark.SparkConf;
import org.apache.spark.sql.SparkSession;

/**
 * The one place the CLI makes its SparkSession. Under spark-submit the master and settings come from spark-submit;
 * run embedded (bin/stagecraft, a notebook), the master defaults to {@code local[*]}.
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
    org.apache.logging.log4j.core.config.Configuration current = ctx.getConfiguration();
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
      Configurator.reconfigure(java.net.URI.create(config.toString()));
    }
  }

  public static SparkSession create(String appName, boolean verbose) {
    return create(appName, verbose, java.util.Map.of());
  }

  /**
   * The session for a workflow: {@code policyConf} (from its resource policies, {@link #policyConf}) fills in what
   * spark-submit and {@code -Dspark.*} did not set — explicit settings win.
   */
  public static SparkSession create(String appName, boolean verbose, java.util.Map<String, String> policyConf) {
    configureLogging(verbose);
    SparkConf conf = new SparkConf(); // reads spark.* system properties (set by spark-submit)
    SparkSession.Builder builder = SparkSession.builder().appName(appName);
    if (!conf.contains("spark.master")) {
      builder.master("local[*]");
    }
    policyConf.forEach((k, v) -> {
      if (!conf.contains(k)) {
        builder.config(k, v);
      }
    });
    if (!conf.contains("spark.scheduler.mode")) {
      // Independent steps run concurrently, each in its own pool; FIFO would queue them.
      builder.config("spark.scheduler.mode", "FAIR");
    }
    if (!verbose && !conf.contains("spark.ui.showConsoleProgress")) {
      builder.config("spark.ui.showConsoleProgress", "false"); // Stagecraft prints its own progress
    }
    return builder.getOrCreate();
  }

  /** The master this process's application runs on: spark-submit's or {@code -Dspark.master}, else local. */
  public static String master() {
    return new SparkConf().get("spark.master", "local[*]");
  }

  /** Where {@code spec}'s steps run on this process's master ({@link dev.stagecraft.jobs.engine.Placement}). */
  public static dev.stagecraft.jobs.engine.Placement placement(dev.stagecraft.jobs.spec.WorkflowSpec spec,
      dev.stagecraft.jobs.spec.StepKinds kinds) {
    return dev.stagecraft.jobs.engine.Placement.of(spec, master(), s -> kinds.get(s.kind()).barrier());
  }

  /** {@link #policyConf(dev.stagecraft.jobs.spec.WorkflowSpec, dev.stagecraft.jobs.engine.Placement)} with the
   * placement of the built-in step kinds. */
  public static java.util.Map<String, String> policyConf(dev.stagecraft.jobs.spec.WorkflowSpec spec) {
    dev.stagecraft.jobs.spec.StepKinds kinds = dev.stagecraft.jobs.spec.StepKinds.discover();
    return policyConf(spec, placement(spec, kinds));
  }

  /**
   * Application settings from the policies a workflow's steps name (none if no step names one). In local mode only
   * the FAIR pools' allocation file applies (one JVM: nothing to size or allocate; the engine logs what each policy
   * ignores). On a cluster the steps that {@code placement} runs as their own application do not size this one. The
   * RAPIDS plugin is left out, with a log line, when its jar is not on the classpath.
   */
  public static java.util.Map<String, String> policyConf(dev.stagecraft.jobs.spec.WorkflowSpec spec,
      dev.stagecraft.jobs.engine.Placement placement) {
    java.util.List<dev.stagecraft.policies.ResourcePolicy> all = spec.steps().stream()
        .map(spec::policyOf).flatMap(java.util.Optional::stream).distinct().toList();
    java.util.List<dev.stagecraft.policies.ResourcePolicy> used = placement.inAppPolicies(spec);
    java.util.Map<String, String> out = new java.util.LinkedHashMap<>();
    if (all.isEmpty()) {
      return out;
    }
    try {
      java.nio.file.Path xml = java.nio.file.Files.createTempFile("stagecraft-pools-", ".xml");
      xml.toFile().deleteOnExit();
      java.nio.file.Files.writeString(xml, dev.stagecraft.policies.spark.SparkPolicies.fairSchedulerXml(all));
      out.put("spark.scheduler.allocation.file", xml.toString());
    } catch (java.io.IOException e) {
      org.slf4j.LoggerFactory.getLogger(SparkSessions.class).warn(
          "Cannot write the FAIR scheduler allocation file (pools keep weight 1): {}", e.toString());
    }
    if (master().startsWith("local") || used.isEmpty()) {
      return out;
    }
    dev.stagecraft.policies.ResourcePolicy base =
        dev.stagecraft.policies.spark.SparkPolicies.basePolicy(used).orElseThrow();
    out.putAll(dev.stagecraft.policies.spark.SparkPolicies.applicationConf(base, used,
        java.util.Optional.ofNullable(System.getenv("STAGECRAFT_GPU_DISCOVERY_SCRIPT"))));
    if (out.containsKey("spark.plugins")) {
      try {
        Class.forName(dev.stagecraft.policies.spark.SparkPolicies.RAPIDS_PLUGIN, false,
            SparkSessions.class.getClassLoader());
      } catch (ClassNotFoundException e) {
        org.slf4j.LoggerFactory.getLogger(SparkSessions.class).info("A policy enables RAPIDS but its jar is not on "
            + "the classpath (bin/fetch-rapids): the steps run on the CPU");
        out.remove("spark.plugins");
        out.keySet().removeIf(k -> k.startsWith("spark.rapids."));
      }
    }
    return out;
  }
}
