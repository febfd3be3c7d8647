package dev.stagecraft.jobs.bench;

import dev.stagecraft.jobs.config.Settings;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A Spark standalone cluster on this machine, started with a Spark distribution's {@code bin/spark-class} (as its
 * {@code sbin} scripts would), for benchmarks and tests: a master and workers, which may advertise fake GPUs through
 * discovery scripts (each worker's addresses distinct). Logs ({@code master.log}, {@code worker-N.log}) and each
 * worker's work folder ({@code worker-N}) stay in {@code dir}.
 */
public final class DistributionCluster implements AutoCloseable {
  private static final com.fasterxml.jackson.databind.ObjectMapper JSON =
      new com.fasterxml.jackson.databind.ObjectMapper();

  private final Process master;
  private final List<Process> workers = new ArrayList<>();
  private final int port;

  private DistributionCluster(Process master, int port) {
    this.master = master;
    this.port = port;
  }

  public static DistributionCluster start(Path sparkHome, Path dir, int workers, int cores, String memory, int gpus)
      throws Exception {
    int port = freePort();
    int web = freePort();
    String sparkClass = sparkHome.resolve("bin/spark-class").toString();
    Process master = daemon(sparkHome, List.of(sparkClass, "org.apache.spark.deploy.master.Master", "--host",
        "127.0.0.1", "--port", String.valueOf(port), "--webui-port", String.valueOf(web)), Map.of(),
        dir.resolve("master.log"));
    DistributionCluster cluster = new DistributionCluster(master, port);
    try {
      for (int i = 0; i < workers; i++) {
        String opts = gpus == 0 ? "" : "-Dspark.worker.resource.gpu.amount=" + gpus
            + " -Dspark.worker.resource.gpu.discoveryScript=" + gpuScript(dir, i, gpus);
        cluster.workers.add(daemon(sparkHome, List.of(sparkClass, "org.apache.spark.deploy.worker.Worker",
            "--host", "127.0.0.1", "--cores", String.valueOf(cores), "--memory", memory, "--webui-port",
            String.valueOf(freePort()), "--work-dir", dir.resolve("worker-" + i).toString(), cluster.masterUrl()),
            Map.of("SPARK_WORKER_OPTS", opts), dir.resolve("worker-" + i + ".log")));
      }
      cluster.awaitWorkers(web, workers, Duration.ofSeconds(120));
      return cluster;
    } catch (Exception e) {
      cluster.close();
      throw e;
    }
  }

  /** A discovery script reporting worker {@code i}'s GPU addresses {@code i*gpus … i*gpus+gpus-1}. */
  private static Path gpuScript(Path dir, int i, int gpus) throws IOException {
    List<String> addresses = new ArrayList<>();
    for (int g = 0; g < gpus; g++) {
      addresses.add("\"" + (i * gpus + g) + "\"");
    }
    Path script = dir.resolve("gpus-" + i + ".sh");
    Files.writeString(script, "#!/usr/bin/env bash\necho '{\"name\":\"gpu\",\"addresses\":["
        + String.join(",", addresses) + "]}'\n");
    Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
    return script;
  }

  public String masterUrl() {
    return "spark://127.0.0.1:" + port;
  }

  private void awaitWorkers(int web, int n, Duration timeout) throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    long deadline = System.nanoTime() + timeout.toNanos();
    String last = "";
    while (System.nanoTime() < deadline) {
      if (!master.isAlive()) {
        throw new IllegalStateException("The benchmark's Spark master exited (see master.log)");
      }
      try {
        last = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + web + "/json/")).build(),
            HttpResponse.BodyHandlers.ofString()).body();
        if (JSON.readTree(last).path("aliveworkers").asInt() >= n) {
          return;
        }
      } catch (IOException e) { // not listening yet, or not JSON yet
        last = e.toString();
      }
      Thread.sleep(500);
    }
    throw new IllegalStateException("The benchmark's Spark workers did not register within " + timeout.toSeconds()
        + " s (master says: " + last + ")");
  }

  private static Process daemon(Path sparkHome, List<String> cmd, Map<String, String> env, Path log)
      throws IOException {
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().put(Settings.SPARK_HOME_ENV, sparkHome.toString());
    pb.environment().put(Settings.SPARK_LOCAL_IP_ENV, "127.0.0.1");
    pb.environment().putAll(env);
    return pb.start();
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /** Stops the workers (and the executors they started), then the master. */
  @Override
  public void close() {
    List<Process> all = new ArrayList<>(workers);
    all.add(master);
    for (Process p : all) {
      p.descendants().forEach(ProcessHandle::destroy); // executors the workers started
      p.destroy();
    }
    for (Process p : all) {
      try {
        if (!p.waitFor(20, TimeUnit.SECONDS)) {
          p.descendants().forEach(ProcessHandle::destroyForcibly);
          p.destroyForcibly();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }
}
