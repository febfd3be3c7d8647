package dev.stagecraft.jobs.cli;

import java.net.URL;
import org.apache.spark.util.MutableURLClassLoader;

/** Class-loader set-up that needs Spark classes, kept out of the picocli command classes (loaded without Spark). */
final class SparkClassLoaders {
  private SparkClassLoaders() {}

  /** RAPIDS' shim loader needs a mutable context class loader, else ExplainPlan returns "". */
  static void useMutableContextLoader() {
    Thread.currentThread().setContextClassLoader(
        new MutableURLClassLoader(new URL[0], SparkClassLoaders.class.getClassLoader()));
  }
}
