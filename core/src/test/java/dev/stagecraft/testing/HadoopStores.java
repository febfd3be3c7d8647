package dev.stagecraft.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;

/**
 * The three kinds of store a workspace can live on, for contract tests that run the same cases on each: the local
 * file system, a real HDFS (MiniDFSCluster with one DataNode, in the test JVM) and a real S3 API ({@link S3Proxy} in
 * its own process, through S3A). Both servers start once per test class, side by side. Register it as
 * {@code @RegisterExtension static final HadoopStores STORES = new HadoopStores();} and feed a parameterised test
 * with {@code STORES.fresh("name")}.
 */
public final class HadoopStores implements BeforeAllCallback, AfterAllCallback, TestExecutionExceptionHandler {
  /** A fresh, empty folder on one kind of store and the configuration that reaches it. */
  public record Store(String name, Path root, Configuration conf) {
    public FileSystem fs() throws IOException {
      return root.getFileSystem(conf);
    }

    /** True on S3: no rename, no append, exclusive create is check-then-write. */
    public boolean isObjectStore() {
      return root.toUri().getScheme().equals("s3a");
    }

    @Override
    public String toString() {
      return name;
    }
  }

  private final S3Proxy.PerClass s3 = new S3Proxy.PerClass();
  private MiniDFSCluster hdfs;

  /** New empty folders named {@code prefix-…}: {@code file}, {@code hdfs} and {@code s3}, in that order. */
  public Stream<Store> fresh(String prefix) throws IOException {
    String name = prefix + "-" + System.nanoTime();
    return Stream.of(
        new Store("file", new Path(Files.createTempDirectory(prefix).toUri()), new Configuration()),
        new Store("hdfs", new Path("hdfs://127.0.0.1:" + hdfs.getNameNodePort() + "/" + name), hdfsConfiguration()),
        new Store("s3", new Path(s3().bucketUri().resolve(name)), s3().configuration()));
  }

  public S3Proxy s3() {
    return s3.get();
  }

  public MiniDFSCluster hdfs() {
    return hdfs;
  }

  /** A client configuration for the MiniDFSCluster: one DataNode, so one replica. */
  public static Configuration hdfsConfiguration() {
    Configuration conf = new Configuration();
    conf.set("dfs.replication", "1");
    return conf;
  }

  @Override
  public void beforeAll(ExtensionContext context) throws Exception {
    CompletableFuture<MiniDFSCluster> starting = CompletableFuture.supplyAsync(() -> {
      try {
        Configuration conf = hdfsConfiguration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, Files.createTempDirectory("minidfs").toString());
        // Let a client close a file once its last block is committed, instead of polling (400 ms, 800 ms, …) until
        // the DataNode's block report makes it complete: most of a small-file write's time on a one-node cluster.
        conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf).numDataNodes(1).build();
        cluster.waitActive();
        return cluster;
      } catch (IOException e) {
        throw new IllegalStateException("Cannot start MiniDFSCluster: " + e.getMessage(), e);
      }
    });
    Exception failure = null;
    try {
      s3.beforeAll(context); // meanwhile, in its own process
    } catch (Exception e) {
      failure = e;
    }
    try {
      hdfs = starting.get();
    } catch (ExecutionException e) {
      Exception cause = e.getCause() instanceof Exception c ? c : e;
      if (failure == null) {
        failure = cause;
      } else {
        failure.addSuppressed(cause);
      }
    }
    if (failure != null) {
      throw failure;
    }
  }

  @Override
  public void afterAll(ExtensionContext context) {
    try {
      if (hdfs != null) {
        hdfs.shutdown();
        hdfs = null;
      }
    } finally {
      s3.afterAll(context);
    }
  }

  /** Points at s3proxy's log when a test on S3 fails (its display name names the store: "s3"). */
  @Override
  public void handleTestExecutionException(ExtensionContext context, Throwable t) throws Throwable {
    if (context.getDisplayName().toLowerCase(java.util.Locale.ROOT).contains("s3")) {
      s3.handleTestExecutionException(context, t);
    }
    throw t;
  }
}
