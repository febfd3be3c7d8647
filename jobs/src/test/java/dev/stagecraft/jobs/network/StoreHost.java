package dev.stagecraft.jobs.network;

import dev.stagecraft.testing.HdfsServer;
import dev.stagecraft.testing.HostNetwork.Host;
import dev.stagecraft.testing.S3Proxy;
import dev.stagecraft.testing.StandaloneCluster;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;

/**
 * A store server in host {@code store} of a {@link HostBed}, holding the runs' workspace (ledger, checkpoints,
 * models): a real HDFS ({@link HdfsServer}) or S3 (s3proxy). What it holds is read from this machine's disk, which the
 * test JVM sees even while the store's link is cut (the test JVM cannot reach the hosts' addresses anyway).
 */
abstract class StoreHost implements AutoCloseable {
  /** The workspace's URI on the store. */
  abstract String workspace();

  /** Spark settings that let the driver and the executors reach the store ({@code spark.hadoop.*}). */
  abstract Map<String, String> sparkConf();

  /** The workspace's files, paths relative to it, as the store holds them now (files being written included). */
  abstract Set<String> files() throws IOException;

  /** A folder on this machine holding the workspace's small files (ledgers, manifests) as the store holds them. */
  abstract Path localWorkspace();

  abstract String name();

  @Override
  public abstract void close();

  /** An HDFS NameNode and DataNode in host {@code store}. */
  static StoreHost hdfs(HostBed bed) throws Exception {
    Host host = bed.host("store");
    Path dir = bed.dir.resolve("hdfs");
    Files.createDirectories(dir);
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx512m",
        "-cp", StandaloneCluster.testClassPath(), HdfsServer.class.getName(), dir.toString(), host.address(), "8020");
    Path log = dir.resolve("hdfs.log");
    Process p = new ProcessBuilder(bed.net.command(host, cmd)).redirectErrorStream(true).redirectOutput(log.toFile())
        .start();
    long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
    while (!Files.exists(log) || !Files.readString(log).contains(HdfsServer.READY)) {
      if (!p.isAlive() || System.nanoTime() > deadline) {
        p.destroyForcibly();
        throw new IllegalStateException("HDFS did not start in host store; see " + log);
      }
      Thread.sleep(200);
    }
    String uri = "hdfs://" + host.address() + ":8020";
    return new StoreHost() {
      @Override
      String workspace() {
        return uri + "/ws";
      }

      @Override
      Map<String, String> sparkConf() {
        Map<String, String> conf = new LinkedHashMap<>();
        HdfsServer.clientSettings().forEach((k, v) -> conf.put("spark.hadoop." + k, v));
        return conf;
      }

      @Override
      Set<String> files() throws IOException {
        Set<String> out = new TreeSet<>();
        for (String path : HdfsServer.listing(dir)) {
          if (path.startsWith("/ws/")) {
            out.add(path.substring("/ws/".length()));
          }
        }
        return out;
      }

      @Override
      Path localWorkspace() {
        return dir.resolve("mirror/ws");
      }

      @Override
      String name() {
        return "HDFS at " + uri + " (log: " + log + ")";
      }

      @Override
      public void close() {
        stop(p);
      }
    };
  }

  /** s3proxy in host {@code store}, the workspace in its bucket. */
  static StoreHost s3(HostBed bed) throws Exception {
    Host host = bed.host("store");
    S3Proxy proxy = S3Proxy.startIn(bed.net.command(host, List.of()), host.address(), 9000);
    Path bucket = proxy.bucketFolder();
    return new StoreHost() {
      @Override
      String workspace() {
        return proxy.bucketUri() + "ws";
      }

      @Override
      Map<String, String> sparkConf() {
        // The proxy's S3A settings that differ from Hadoop's defaults: endpoint, keys, timeouts, buffers.
        Configuration defaults = new Configuration();
        Map<String, String> conf = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : proxy.configuration()) {
          String k = e.getKey();
          if ((k.startsWith("fs.s3a.") || k.equals("hadoop.tmp.dir")) && !e.getValue().equals(defaults.get(k))) {
            conf.put("spark.hadoop." + k, e.getValue());
          }
        }
        return conf;
      }

      @Override
      Set<String> files() throws IOException {
        Path ws = bucket.resolve("ws");
        Set<String> out = new TreeSet<>();
        if (!Files.isDirectory(ws)) {
          return out;
        }
        try (Stream<Path> all = Files.walk(ws)) {
          List<Path> files = new ArrayList<>(all.filter(Files::isRegularFile).toList());
          for (Path f : files) {
            if (!f.getFileName().toString().startsWith(".")) {
              out.add(ws.relativize(f).toString());
            }
          }
        } catch (java.io.UncheckedIOException e) {
          return files(); // a file went away while walking: look again
        }
        return out;
      }

      @Override
      Path localWorkspace() {
        return bucket.resolve("ws");
      }

      @Override
      String name() {
        return proxy.toString();
      }

      @Override
      public void close() {
        proxy.close();
      }
    };
  }

  private static void stop(Process p) {
    p.destroy();
    try {
      if (!p.waitFor(20, TimeUnit.SECONDS)) {
        p.destroyForcibly();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
    }
  }
}
