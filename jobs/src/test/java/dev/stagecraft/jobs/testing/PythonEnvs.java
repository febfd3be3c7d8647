package dev.stagecraft.jobs.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * The Python-side installs the integration tests use, made by {@code bin/spark-dist}, {@code bin/airflow-env} and {@code bin/notebook-env}
 * (which {@code bin/test} runs first): found through {@code STAGECRAFT_SPARK_HOME} / {@code STAGECRAFT_AIRFLOW_VENV},
 * else in their cache folder. Tests skip with {@link #MISSING_SPARK} / {@link #MISSING_AIRFLOW} when absent.
 */
public final class PythonEnvs {
  public static final String MISSING_SPARK =
      "No Spark distribution: run bin/spark-dist (bin/test does) or set STAGECRAFT_SPARK_HOME";
  public static final String MISSING_AIRFLOW =
      "No Airflow venv: run bin/airflow-env (bin/test does) or set STAGECRAFT_AIRFLOW_VENV";
  public static final String MISSING_NOTEBOOK =
      "No Jupyter + JJava venv: run bin/notebook-env (bin/test does) or set STAGECRAFT_NOTEBOOK_VENV";

  private PythonEnvs() {}

  private static Path cache() {
    String c = System.getenv("STAGECRAFT_CACHE");
    return c != null ? Path.of(c) : Path.of(System.getProperty("user.home"), ".cache", "stagecraft");
  }

  /**
   * The folder of the Spark distribution bin/spark-dist installs for this build's Spark (pip's pyspark of the same
   * version; with {@code bin/spark-submit} and {@code jars/}), if installed.
   */
  public static Optional<Path> sparkHome() {
    String env = System.getenv("STAGECRAFT_SPARK_HOME");
    Optional<Path> home = Optional.empty();
    if (env != null && !env.isBlank()) {
      home = Optional.of(Path.of(env));
    } else {
      Path marker = cache().resolve("spark-dist-" + System.getProperty("stagecraft.spark.version", "3.5.5"));
      if (Files.exists(marker.resolve(".complete"))) {
        try {
          home = Optional.of(Path.of(Files.readString(marker.resolve("spark-home")).trim()));
        } catch (IOException e) {
          return Optional.empty();
        }
      }
    }
    return home.filter(h -> Files.isExecutable(h.resolve("bin/spark-submit")));
  }

  /** The Airflow venv (with {@code bin/airflow}), if installed. */
  public static Optional<Path> airflowVenv() {
    String env = System.getenv("STAGECRAFT_AIRFLOW_VENV");
    Path venv;
    if (env != null && !env.isBlank()) {
      venv = Path.of(env);
    } else {
      venv = cache().resolve("airflow-3.3.2").resolve("venv");
      if (!Files.exists(venv.getParent().resolve(".complete"))) {
        return Optional.empty();
      }
    }
    return Optional.of(venv).filter(v -> Files.isExecutable(v.resolve("bin/airflow")));
  }

  /** The Jupyter + JJava venv made by {@code bin/notebook-env} (with {@code bin/python} and the {@code java} kernel). */
  public static Optional<Path> notebookVenv() {
    String env = System.getenv("STAGECRAFT_NOTEBOOK_VENV");
    Path venv;
    if (env != null && !env.isBlank()) {
      venv = Path.of(env);
    } else {
      venv = cache().resolve("notebook-1.0a8").resolve("venv");
      if (!Files.exists(venv.getParent().resolve(".complete"))) {
        return Optional.empty();
      }
    }
    return Optional.of(venv).filter(v -> Files.isExecutable(v.resolve("bin/python"))
        && Files.exists(v.resolve("share/jupyter/kernels/java/kernel.json")));
  }
}
