package dev.stagecraft.jobs.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * A real Airflow 3 for tests: SQLite, LocalExecutor, on loopback, with a fixed JWT secret and a random test password
 * (SimpleAuthManager, user {@value #USER} with role admin). Runs {@code db migrate}, then the api-server, the
 * scheduler and the DAG processor as separate processes; {@link #close()} stops them and their children.
 *
 * <p>Tasks find {@code spark-submit} on their PATH ({@code $SPARK_HOME/bin} first), and the {@code spark_default}
 * connection points at {@code local[2]}.
 */
public final class AirflowServer implements AutoCloseable {
  public static final String USER = "stagecraft";

  private final Path venv;
  private final Path home;
  private final Map<String, String> env = new LinkedHashMap<>();
  private final List<Process> processes = new ArrayList<>();
  private final int port;
  private final String password;

  private AirflowServer(Path venv, Path sparkHome, Path home, Duration tokenLifetime) throws IOException {
    this.venv = venv;
    this.home = home;
    this.port = Proc.freePort();
    this.password = "pw-" + UUID.randomUUID();
    Files.createDirectories(dagsFolder());
    String base = "http://127.0.0.1:" + port;
    env.put("AIRFLOW_HOME", home.toString());
    env.put("AIRFLOW__CORE__DAGS_FOLDER", dagsFolder().toString());
    env.put("AIRFLOW__CORE__LOAD_EXAMPLES", "False");
    env.put("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False");
    env.put("AIRFLOW__CORE__EXECUTOR", "LocalExecutor");
    env.put("AIRFLOW__CORE__PARALLELISM", "4");
    env.put("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", base + "/execution/");
    env.put("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USER + ":admin");
    env.put("AIRFLOW__API__HOST", "127.0.0.1");
    env.put("AIRFLOW__API__PORT", String.valueOf(port));
    env.put("AIRFLOW__API__BASE_URL", base);
    env.put("AIRFLOW__API__WORKERS", "1");
    env.put("AIRFLOW__API_AUTH__JWT_SECRET", "stagecraft-test-" + UUID.randomUUID());
    env.put("AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME", String.valueOf(tokenLifetime.toSeconds()));
    env.put("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "3");
    env.put("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", "10");
    env.put("AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC", "2");
    // SQLite serialises every writer: on a busy 2-core machine a worker's call to the execution API can wait tens of
    // seconds for the lock (default timeout 5 s fails the task before it starts).
    env.put("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "120");
    env.put("AIRFLOW_CONN_SPARK_DEFAULT", "{\"conn_type\": \"spark\", \"host\": \"local[2]\"}");
    env.put("SPARK_HOME", sparkHome.toString());
    env.put("SPARK_LOCAL_IP", "127.0.0.1");
    env.put("PATH", sparkHome.resolve("bin") + ":" + venv.resolve("bin") + ":" + System.getenv("PATH"));
    // Deterministic login: SimpleAuthManager reads passwords from this file instead of generating them.
    Files.writeString(home.resolve("simple_auth_manager_passwords.json.generated"),
        "{\"" + USER + "\": \"" + password + "\"}");
  }

  /**
   * Migrates a fresh SQLite database under {@code home} and starts the components; returns once the API answers and
   * the scheduler and DAG processor report healthy.
   */
  public static AirflowServer start(Path venv, Path sparkHome, Path home, Duration tokenLifetime) throws Exception {
    AirflowServer s = new AirflowServer(venv, sparkHome, home, tokenLifetime);
    try {
      Proc.Result migrate = s.cli(Duration.ofMinutes(4), "db", "migrate");
      if (migrate.code() != 0) {
        throw new IllegalStateException("airflow db migrate failed:\n" + migrate.err());
      }
      s.launch("api-server");
      s.launch("scheduler");
      s.launch("dag-processor");
      s.awaitHealthy(Duration.ofMinutes(3));
      return s;
    } catch (Exception e) {
      s.close();
      throw e;
    }
  }

  public String url() {
    return "http://127.0.0.1:" + port;
  }

  public String user() {
    return USER;
  }

  public String password() {
    return password;
  }

  public Path home() {
    return home;
  }

  public Path dagsFolder() {
    return home.resolve("dags");
  }

  /** Runs {@code airflow ARGS…} against this installation. */
  public Proc.Result cli(Duration timeout, String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(venv.resolve("bin/airflow").toString());
    cmd.addAll(List.of(args));
    return Proc.run(cmd, env, home.resolve("cli"), timeout);
  }

  /** The log of one task try, as Airflow's file task handler wrote it. */
  public String taskLog(String dagId, String runId, String taskId) throws IOException {
    Path dir = home.resolve("logs").resolve("dag_id=" + dagId).resolve("run_id=" + runId)
        .resolve("task_id=" + taskId);
    StringBuilder all = new StringBuilder();
    if (Files.isDirectory(dir)) {
      try (var files = Files.walk(dir)) {
        for (Path f : files.filter(Files::isRegularFile).sorted().toList()) {
          all.append(Files.readString(f));
        }
      }
    }
    return all.toString();
  }

  private void launch(String component) throws IOException {
    Path log = home.resolve(component + ".log");
    ProcessBuilder pb = new ProcessBuilder(venv.resolve("bin/airflow").toString(), component)
        .directory(home.toFile()).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().putAll(env);
    processes.add(pb.start());
  }

  private void awaitHealthy(Duration timeout) throws Exception {
    HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    ObjectMapper json = new ObjectMapper();
    long deadline = System.nanoTime() + timeout.toNanos();
    String last = "";
    while (System.nanoTime() < deadline) {
      for (Process p : processes) {
        if (!p.isAlive()) {
          throw new IllegalStateException("An Airflow component exited (" + p.info().commandLine().orElse("?")
              + "): see the logs in " + home);
        }
      }
      try {
        last = http.send(HttpRequest.newBuilder(URI.create(url() + "/api/v2/monitor/health"))
            .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString()).body();
        JsonNode h = json.readTree(last);
        if ("healthy".equals(h.path("scheduler").path("status").asText())
            && "healthy".equals(h.path("dag_processor").path("status").asText())) {
          return;
        }
      } catch (IOException e) {
        // not listening yet
      }
      Thread.sleep(500);
    }
    throw new IllegalStateException("Airflow did not become healthy within " + timeout + ": " + last);
  }

  @Override
  public void close() {
    for (Process p : processes) {
      try {
        Proc.kill(p);
      } catch (RuntimeException e) {
        System.err.println("Cannot stop an Airflow component: " + e);
      }
    }
  }
}
