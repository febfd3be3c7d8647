package dev.stagecraft.jobs.network;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.jobs.testing.Proc;
import dev.stagecraft.testing.HostNetwork;
import dev.stagecraft.testing.HostNetwork.Host;
import dev.stagecraft.testing.StandaloneCluster;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The hosts the network fault tests share: a Spark standalone master in host {@code master}, a worker with one core
 * and one fake GPU in each of {@code w1}, {@code w2} and {@code w3} (three, so that a ring has a rank whose two links
 * are both a given host's), the driver in host {@code driver} (a JVM running the
 * {@code stagecraft} command, as spark-submit in client mode would), and spare hosts for stores and strangers. Runs
 * share this machine's file system (data, workspace), as hosts that mount one shared file system would.
 */
final class HostBed implements AutoCloseable {
  static final Path DATA = Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples/a9a/data");

  static final List<String> WORKERS = List.of("w1", "w2", "w3");

  final Path dir;
  final HostNetwork net;
  final StandaloneCluster cluster;

  private HostBed(Path dir, HostNetwork net, StandaloneCluster cluster) {
    this.dir = dir;
    this.net = net;
    this.cluster = cluster;
  }

  static HostBed start(Path dir) throws Exception {
    HostNetwork net = HostNetwork.create("master", "w1", "w2", "w3", "driver", "store", "stranger");
    try {
      StandaloneCluster cluster = StandaloneCluster.start(dir.resolve("cluster"), net, net.host("master"),
          WORKERS.stream().map(net::host).toList(), 1, 1);
      return new HostBed(dir, net, cluster);
    } catch (Exception e) {
      net.close();
      throw e;
    }
  }

  Host host(String name) {
    return net.host(name);
  }

  /** A driver running {@code stagecraft run WORKFLOW --run-id RUN-ID} in the driver host; output in RUN-ID.log. */
  Driver run(Path workflow, String runId, Map<String, String> conf) throws IOException {
    Map<String, String> all = new LinkedHashMap<>(cluster.driverConf(host("driver").address(), 1, true));
    all.putAll(conf);
    List<String> cmd = cluster.driverCommand(host("driver"), all, "dev.stagecraft.jobs.Main",
        List.of("run", workflow.toString(), "--run-id", runId, "--workspace", workspace().toString()));
    Path log = dir.resolve(runId + ".log");
    ProcessBuilder pb = new ProcessBuilder(new ArrayList<>(cmd)).directory(dir.toFile()).redirectErrorStream(true)
        .redirectOutput(log.toFile());
    pb.environment().put("STAGECRAFT_PROGRESS", "plain");
    pb.environment().put("SPARK_LOCAL_IP", host("driver").address());
    return new Driver(runId, pb.start(), log);
  }

  Path workspace() {
    return dir.resolve("ws");
  }

  /** A driver process and what it printed. */
  final class Driver {
    final String runId;
    final Process process;
    final Path log;

    Driver(String runId, Process process, Path log) {
      this.runId = runId;
      this.process = process;
      this.log = log;
    }

    String output() throws IOException {
      return Files.readString(log);
    }

    /** Waits for the run to end; its ledger. */
    JsonNode await(Duration timeout) throws Exception {
      if (!process.waitFor(timeout.toSeconds(), TimeUnit.SECONDS)) {
        Proc.kill(process);
        throw new AssertionError("The run " + runId + " did not end within " + timeout + ":\n" + output());
      }
      return Ledgers.newest(workspace(), runId);
    }
  }

  @Override
  public void close() {
    cluster.close();
    net.close();
  }
}
