package dev.stagecraft.jobs.config;

import java.util.Optional;

/**
 * The names Stagecraft is configured by from outside a workflow file — environment variables, system properties and
 * Spark settings — each once, with its default beside it. (Airflow's URL and credentials variables belong to the
 * Airflow client: {@code AirflowClient} and {@code AirflowCredentials}.)
 */
public final class Settings {
  private Settings() {}

  /** The class {@code spark-submit --class} and child JVMs run: the {@code stagecraft} command. */
  public static final String MAIN_CLASS = "dev.stagecraft.jobs.Main";

  // Where the Stagecraft checkout is (the example workflow, the shaded jar): the system property (bin/stagecraft sets
  // it), else the environment variable (bin/notebook sets it), else the current folder.

  /** System property: the Stagecraft checkout. */
  public static final String HOME_PROPERTY = "stagecraft.home";
  /** Environment variable: the Stagecraft checkout, when {@link #HOME_PROPERTY} is not set. */
  public static final String HOME_ENV = "STAGECRAFT_HOME";
  /** The Stagecraft checkout when neither {@link #HOME_PROPERTY} nor {@link #HOME_ENV} says. */
  public static final String HOME_DEFAULT = ".";

  /** The Stagecraft checkout: {@link #HOME_PROPERTY}, else {@link #HOME_ENV}, else {@link #HOME_DEFAULT}. */
  public static String home() {
    return System.getProperty(HOME_PROPERTY, System.getenv().getOrDefault(HOME_ENV, HOME_DEFAULT));
  }

  /**
   * Environment variable: how progress is printed, {@link #PROGRESS_PLAIN} or {@link #PROGRESS_TTY}. Default: tty
   * when the process has a console, plain otherwise.
   */
  public static final String PROGRESS_ENV = "STAGECRAFT_PROGRESS";
  /** {@link #PROGRESS_ENV}: one line per change (what a launched step's parent and Airflow's logs read). */
  public static final String PROGRESS_PLAIN = "plain";
  /** {@link #PROGRESS_ENV}: progress lines redrawn in place. */
  public static final String PROGRESS_TTY = "tty";

  /**
   * Environment variable: the Spark distribution whose {@code bin/spark-submit} launches the steps that run as their
   * own application (and whose daemons make {@code bench cost}'s cluster). Default: none.
   */
  public static final String SPARK_HOME_ENV = "SPARK_HOME";
  /** Environment variable: the Spark distribution, when {@link #SPARK_HOME_ENV} is not set. Default: none. */
  public static final String STAGECRAFT_SPARK_HOME_ENV = "STAGECRAFT_SPARK_HOME";

  /** The Spark distribution: {@link #SPARK_HOME_ENV}, else {@link #STAGECRAFT_SPARK_HOME_ENV} (blank is unset). */
  public static Optional<String> sparkHome() {
    return nonBlankEnv(SPARK_HOME_ENV).or(() -> nonBlankEnv(STAGECRAFT_SPARK_HOME_ENV));
  }

  /** Environment variable: the address the processes of a Spark distribution bind to. Default: Spark's guess. */
  public static final String SPARK_LOCAL_IP_ENV = "SPARK_LOCAL_IP";

  /**
   * Environment variable: the GPU discovery script of a GPU policy's executors, when the application does not set
   * {@link #GPU_DISCOVERY_SCRIPT_CONF}. Default: none (Spark's).
   */
  public static final String GPU_DISCOVERY_SCRIPT_ENV = "STAGECRAFT_GPU_DISCOVERY_SCRIPT";

  // What a run tells the step it launches as its own application (environment variables of the launched process;
  // unset in any other process).

  /** Environment variable: the token of the launching run's lease; the launched step runs under it. */
  public static final String PARENT_LEASE_ENV = "STAGECRAFT_PARENT_LEASE";
  /** Environment variable: the workspace file the launched application writes its usage to, for the run's cost. */
  public static final String USAGE_FILE_ENV = "STAGECRAFT_USAGE_FILE";
  /** Environment variable: the workspace file holding what the step's {@code prepare} returned in the launching run. */
  public static final String PREPARED_FILE_ENV = "STAGECRAFT_PREPARED_FILE";

  // Spark settings.

  /**
   * Spark setting, Stagecraft's own: the market (a {@code ResourcePolicy.Market} name) a launched application's
   * executors are priced at. Default: the step's policy's.
   */
  /**
   * Spark conf: how long a lease's record may stay unchanged before another process takes the run (or step) over;
   * a Spark time string ({@code 60s}, {@code 2min}). Longer rides out longer pauses (GC, a slow store); shorter lets a
   * {@code run --resume} on another host take over a dead driver's run sooner.
   */
  public static final String LEASE_STALE_AFTER_CONF = "spark.stagecraft.lease.staleAfter";
  /** Spark conf: how often a lease's holder renews its record (a Spark time string; well below the above). */
  public static final String LEASE_HEARTBEAT_CONF = "spark.stagecraft.lease.heartbeat";

  public static final String EXECUTOR_MARKET_CONF = "spark.stagecraft.executor.market";
  /** Spark setting: the master; spark-submit or {@code -Dspark.master} set it. */
  public static final String MASTER_CONF = "spark.master";
  /** The master when nothing sets {@link #MASTER_CONF}: local Spark on every core. */
  public static final String MASTER_DEFAULT = "local[*]";
  /** Spark setting: the scheduler mode. */
  public static final String SCHEDULER_MODE_CONF = "spark.scheduler.mode";
  /** {@link #SCHEDULER_MODE_CONF} when not set: independent steps run concurrently, each in its own pool. */
  public static final String SCHEDULER_MODE_DEFAULT = "FAIR";
  /** Spark local property: the FAIR pool of the jobs a thread submits; a step's is its policy's pool, else its id. */
  public static final String SCHEDULER_POOL_PROPERTY = "spark.scheduler.pool";
  /** Spark setting: Spark's console progress bar. */
  public static final String CONSOLE_PROGRESS_CONF = "spark.ui.showConsoleProgress";
  /** {@link #CONSOLE_PROGRESS_CONF} when not set and not verbose: Stagecraft prints its own progress. */
  public static final String CONSOLE_PROGRESS_DEFAULT = "false";
  /** Spark setting: the GPU discovery script of the executors. Default: {@link #GPU_DISCOVERY_SCRIPT_ENV}. */
  public static final String GPU_DISCOVERY_SCRIPT_CONF = "spark.executor.resource.gpu.discoveryScript";
  /** Spark setting: the plugins (a policy may enable RAPIDS). Default: none. */
  public static final String PLUGINS_CONF = "spark.plugins";
  /** Prefix of the RAPIDS Accelerator's settings. */
  public static final String RAPIDS_CONF_PREFIX = "spark.rapids.";
  /** Spark setting: the FAIR pools' file, written from the workflow's policies. Default: none (every pool weighs 1). */
  public static final String ALLOCATION_FILE_CONF = "spark.scheduler.allocation.file";
  /** Spark setting: whether the application serves its web UI. */
  public static final String UI_ENABLED_CONF = "spark.ui.enabled";
  /** Spark setting: the driver's host name, as executors reach it. */
  public static final String DRIVER_HOST_CONF = "spark.driver.host";
  /** Spark setting: the address the driver listens on. */
  public static final String DRIVER_BIND_ADDRESS_CONF = "spark.driver.bindAddress";

  private static Optional<String> nonBlankEnv(String name) {
    return Optional.ofNullable(System.getenv(name)).filter(s -> !s.isBlank());
  }
}
