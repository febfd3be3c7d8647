package dev.stagecraft.testing;

import org.apache.spark.sql.SparkSession;

/** One local[2] SparkSession per test JVM, as the CLI configures its own (UI off, loopback, FAIR pools). */
public final class LocalSpark {
  private static SparkSession session;

  private LocalSpark() {}

  public static synchronized SparkSession get() {
    if (session == null) {
      session = SparkSession.builder()
          .master("local[2]")
          .appName("stagecraft-tests")
          .config("spark.ui.enabled", "false")
          .config("spark.driver.host", "127.0.0.1")
          .config("spark.driver.bindAddress", "127.0.0.1")
          .config("spark.scheduler.mode", "FAIR")
          .config("spark.sql.shuffle.partitions", "2")
          .config("spark.ui.showConsoleProgress", "false")
          .getOrCreate();
    }
    return session;
  }
}
