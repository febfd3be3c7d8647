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
    configureLogging(verbose);
    SparkConf conf = new SparkConf(); // reads spark.* system properties (set by spark-submit)
    SparkSession.Builder builder = SparkSession.builder().appName(appName);
    if (!conf.contains("spark.master")) {
      builder.master("local[*]");
    }
    if (!conf.contains("spark.scheduler.mode")) {
      // Independent steps run concurrently, each in its own pool; FIFO would queue them.
      builder.config("spark.scheduler.mode", "FAIR");
    }
    if (!verbose && !conf.contains("spark.ui.showConsoleProgress")) {
      builder.config("spark.ui.showConsoleProgress", "false"); // Stagecraft prints its own progress
    }
    return builder.getOrCreate();
  }
}
