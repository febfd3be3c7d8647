package dev.stagecraft.jobs.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.testing.HostNetwork;
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
 *
 * <p>{@link #startIn} runs it in a host of a {@link HostNetwork} instead, bound to the host's address: every component
 * and CLI call runs in that host, and so do the health checks (this JVM cannot reach the hosts' addresses).
 */
public final class AirflowServer implements AutoCloseable {
  public static final String USER = "stagecraft";

  private final Path venv;
  private final Path home;
  private final Map<String, String> env = new LinkedHashMap<>();
  private final List<Process> processes = new ArrayList<>();
  private final int port;
  private final String password;
  private final String address;
  private final HostNetwork net; // null: on this machine's loopback
  private final HostNetwork.Host host;

  private AirflowServer(Path venv, Path sparkHome, Path home, Duration tokenLifetime, HostNetwork net,
      HostNetwork.Host host) throws IOException {
    this.venv = venv;
    this.home = home;
    this.net = net;
    this.host = host;
    this.address = host == null ? "127.0.0.1" : host.address();
    // A host's network namespace is its own: nothing else listens there.
    this.port = host == null ? Proc.freePort() : 8080;
    this.password = "pw-" + UUID.randomUUID();
    Files.createDirectories(dagsFolder());
    String base = "http://" + address + ":" + port;
    env.put("AIRFLOW_HOME", home.toString());
    env.put("AIRFLOW__CORE__DAGS_FOLDER", dagsFolder().toString());
    env.put("AIRFLOW__CORE__LOAD_EXAMPLES", "False");
    env.put("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False");
    env.put("AIRFLOW__CORE__EXECUTOR", "LocalExecutor");
    env.put("AIRFLOW__CORE__PARALLELISM", "4");
    env.put("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", base + "/execution/");
    env.put("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USER + ":admin");
    env.put("AIRFLOW__API__HOST", address);
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
    if (sparkHome != null) {
      env.put("SPARK_HOME", sparkHome.toString());
      env.put("SPARK_LOCAL_IP", "127.0.0.1");
    }
    env.put("PATH", (sparkHome == null ? "" : sparkHome.resolve("bin") + ":") + venv.resolve("bin") + ":"
        + System.getenv("PATH"));
    // Deterministic login: SimpleAuthManager reads passwords from this file instead of generating them.
    Files.writeString(home.resolve("simple_auth_manager_passwords.json.generated"),
        "{\"" + USER + "\": \"" + password + "\"}");
  }

  /**
   * Migrates a fresh SQLite database under {@code home} and starts the components; returns once the API answers and
   * the scheduler and DAG processor report healthy.
   */
  public static AirflowServer start(Path venv, Path sparkHome, Path home, Duration tokenLifetime) throws Exception {
    return start(new AirflowServer(venv, sparkHome, home, tokenLifetime, null, null));
  }

  /**
   * {@link #start} in {@code host} of {@code net}, the API bound to the host's address (port 8080); {@code sparkHome}
   * may be null when no task runs Spark.
   */
  public static AirflowServer startIn(HostNetwork net, HostNetwork.Host host, Path venv, Path sparkHome, Path home,
      Duration tokenLifetime) throws Exception {
    return start(new AirflowServer(venv, sparkHome, home, tokenLifetime, net, host));
  }

  private static AirflowServer start(AirflowServer s) throws Exception {
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
    return "http://" + address + ":" + port;
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
    return Proc.run(inHost(cmd), env, home.resolve("cli"), timeout);
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
    ProcessBuilder pb = new ProcessBuilder(inHost(List.of(venv.resolve("bin/airflow").toString(), component)))
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
        last = health(http);
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

  /** {@code cmd} as run where Airflow runs: in its host, if it has one. */
  private List<String> inHost(List<String> cmd) {
    return net == null ? cmd : net.command(host, cmd);
  }

  /** The API's health report; from inside the host (through the venv's Python) when Airflow runs in one. */
  private String health(HttpClient http) throws IOException, InterruptedException {
    String endpoint = url() + "/api/v2/monitor/health";
    if (net == null) {
      return http.send(HttpRequest.newBuilder(URI.create(endpoint)).timeout(Duration.ofSeconds(5)).build(),
          HttpResponse.BodyHandlers.ofString()).body();
    }
    Proc.Result r = Proc.run(inHost(List.of(venv.resolve("bin/python").toString(), "-c",
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
        endpoint)), Map.of(), home.resolve("cli"), Duration.ofSeconds(30));
    if (r.code() != 0) {
      throw new IOException("not answering yet");
    }
    return r.out();
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
