package dev.stagecraft.testing;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;
import org.opentest4j.TestAbortedException;

/**
 * A real S3 API for tests: s3proxy (filesystem-nio2 backend) in its own JVM, reached through Hadoop's S3A.
 *
 * <p>s3proxy 4.x with the {@code filesystem-nio2} backend because it honours a conditional PUT
 * ({@code If-None-Match: *}, "create only if absent") atomically: the object is published with a hard link, which
 * fails if the key exists, so of several writers racing on one key exactly one succeeds and the others get
 * 412 Precondition Failed, as on S3. s3proxy 2.x emulated it on either file backend with a check followed by a write,
 * so two racing writers could both succeed and a test of exclusive creation could pass when it should not.
 *
 * <p>Its own process because s3proxy cannot share a JVM with Spark (jakarta vs javax annotation and ws-rs classes,
 * Guava 33). The build copies {@code org.gaul:s3proxy:jar-with-dependencies} into
 * {@code target/s3proxy/} (parent pom, execution {@code s3proxy-jar}) and names it in the system property
 * {@value #JAR_PROPERTY}; nothing of s3proxy is on the test classpath.
 *
 * <p>Each instance has its own port, folder ({@code target/s3proxy/BUCKET/}: properties, {@code s3proxy.log}, the
 * bucket's files, S3A's buffers), bucket name and random access and secret keys. The keys reach S3A only through
 * {@link #configuration()}, never a URI. Since every instance has its own bucket name, Hadoop's FileSystem cache
 * (keyed by scheme and bucket) never hands one instance's client to another.
 *
 * <p>Usually started once per test class with {@link PerClass}, which also names the log in failure messages.
 */
public final class S3Proxy implements AutoCloseable {
  /** System property naming the s3proxy jar (set by the parent pom's surefire and failsafe configuration). */
  public static final String JAR_PROPERTY = "stagecraft.s3proxy.jar";
  private static final Duration STARTUP_TIMEOUT = Duration.ofSeconds(60);
  private static final SecureRandom RANDOM = new SecureRandom();
  private static final String LOOPBACK = "127.0.0.1";

  private final Process process;
  private final Path dir;
  private final String address;
  private final int port;
  private final boolean inHost;
  private final String bucket;
  private final String accessKey;
  private final String secretKey;

  private S3Proxy(Process process, Path dir, String address, int port, boolean inHost, String bucket, String accessKey,
      String secretKey) {
    this.process = process;
    this.dir = dir;
    this.address = address;
    this.port = port;
    this.inHost = inHost;
    this.bucket = bucket;
    this.accessKey = accessKey;
    this.secretKey = secretKey;
  }

  /** Starts a proxy with one empty bucket and waits until it answers HTTP. */
  public static S3Proxy start() throws IOException, InterruptedException {
    return start(List.of(), LOOPBACK, 0);
  }

  /**
   * Starts a proxy with one empty bucket in another network namespace: its JVM runs as {@code commandPrefix} followed
   * by the java command (e.g. {@code ip netns exec NS}, what {@link HostNetwork#command} puts in front) and listens on
   * {@code address:port} there. This JVM may not reach that address, so the proxy counts as ready once its log says it
   * listens.
   */
  public static S3Proxy startIn(List<String> commandPrefix, String address, int port)
      throws IOException, InterruptedException {
    if (commandPrefix.isEmpty() || port < 1) {
      throw new IllegalArgumentException("Invalid host launch: prefix " + commandPrefix + ", port " + port
          + " (expected a command prefix and a fixed port)");
    }
    return start(commandPrefix, address, port);
  }

  private static S3Proxy start(List<String> prefix, String address, int fixedPort)
      throws IOException, InterruptedException {
    String property = System.getProperty(JAR_PROPERTY);
    if (property == null) {
      throw new IllegalStateException("Cannot start s3proxy: system property " + JAR_PROPERTY + " is not set (run "
          + "the test through Maven, whose parent pom copies the s3proxy jar into target/s3proxy/ and sets it)");
    }
    Path jar = Path.of(property);
    if (!Files.isRegularFile(jar)) {
      throw new IllegalStateException("Cannot start s3proxy: " + jar + " does not exist (the module must set "
          + "stagecraft.s3proxy.skip=${maven.test.skip} so that the build copies it)");
    }
    String bucket = "stagecraft-" + hex(4);
    Path dir = jar.toAbsolutePath().getParent().resolve(bucket);
    String accessKey = "AK" + hex(9).toUpperCase(java.util.Locale.ROOT);
    String secretKey = "sk-" + hex(18);
    // A free port can be taken between our probe and s3proxy's bind: try another one then.
    for (int attempt = 1; ; attempt++) {
      Files.createDirectories(dir.resolve("data").resolve(bucket)); // a folder under the basedir is a bucket
      Files.createDirectories(dir.resolve("tmp"));
      int port = fixedPort > 0 ? fixedPort : freePort();
      Path properties = dir.resolve("s3proxy.properties");
      Files.writeString(properties, String.join("\n",
          "s3proxy.endpoint=http://" + address + ":" + port,
          "s3proxy.authorization=aws-v2-or-v4",
          "s3proxy.identity=" + accessKey,
          "s3proxy.credential=" + secretKey,
          // The java.nio store, whose If-None-Match is atomic (see above). 4.1 also calls it 'filesystem', a name
          // that in 2.x meant the jclouds store that emulated the condition.
          "jclouds.provider=filesystem-nio2",
          "jclouds.filesystem.basedir=" + dir.resolve("data"),
          ""));
      Files.setPosixFilePermissions(properties, PosixFilePermissions.fromString("rw-------"));
      List<String> cmd = new java.util.ArrayList<>(prefix);
      cmd.addAll(List.of(
          Path.of(System.getProperty("java.home"), "bin", "java").toString(),
          // A small server JVM that starts fast: C1 only, serial GC.
          "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
          "-Djava.io.tmpdir=" + dir.resolve("tmp"),
          "-jar", jar.toString(), "--properties", properties.toString()));
      ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
          .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("s3proxy.log").toFile()));
      pb.environment().keySet().removeIf(k -> k.startsWith("AWS_"));
      long started = System.nanoTime();
      S3Proxy proxy = new S3Proxy(pb.start(), dir, address, port, !prefix.isEmpty(), bucket, accessKey, secretKey);
      try {
        proxy.awaitReady();
        System.err.printf("%s: ready in %.1f s%n", proxy, (System.nanoTime() - started) / 1e9);
        return proxy;
      } catch (IllegalStateException e) {
        proxy.close();
        if (attempt < 3 && fixedPort == 0 && Files.readString(proxy.log()).contains("Address already in use")) {
          continue;
        }
        throw e;
      } catch (IOException | InterruptedException | RuntimeException e) {
        proxy.close();
        throw e;
      }
    }
  }

  /** The bucket's name. */
  public String bucket() {
    return bucket;
  }

  /** {@code s3a://BUCKET/} — no credentials in it. */
  public URI bucketUri() {
    return URI.create("s3a://" + bucket + "/");
  }

  /** {@code http://127.0.0.1:PORT}, or the host's address for a proxy in a host. */
  public String endpoint() {
    return "http://" + address + ":" + port;
  }

  /** The secret key, for tests that prove it leaks nowhere. */
  public String secretKey() {
    return secretKey;
  }

  /** The proxy's JVM. */
  ProcessHandle process() {
    return process.toHandle();
  }

  /** s3proxy's own output. */
  public Path log() {
    return dir.resolve("s3proxy.log");
  }

  /**
   * A new Hadoop configuration for S3A against this proxy, credentials included: path-style access,
   * plain HTTP, region us-east-1, only {@code SimpleAWSCredentialsProvider} (never the default chain, which would
   * looks at the environment and the EC2 metadata service), directory markers kept (else S3A deletes parent markers
   * after every write: an extra request per write, and ~20 s per write against s3proxy 2.x), buffers under target/, and
   * short retries so a broken test fails in seconds.
   */
  public Configuration configuration() {
    Configuration conf = new Configuration();
    conf.set("fs.s3a.endpoint", endpoint());
    conf.set("fs.s3a.endpoint.region", "us-east-1");
    conf.setBoolean("fs.s3a.path.style.access", true);
    conf.setBoolean("fs.s3a.connection.ssl.enabled", false);
    conf.set("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider");
    conf.set("fs.s3a.access.key", accessKey);
    conf.set("fs.s3a.secret.key", secretKey);
    conf.set("fs.s3a.directory.marker.retention", "keep");
    conf.set("fs.s3a.buffer.dir", dir.resolve("s3a-buffer").toString());
    conf.set("hadoop.tmp.dir", dir.resolve("hadoop-tmp").toString());
    conf.setInt("fs.s3a.attempts.maximum", 2);
    conf.setInt("fs.s3a.retry.limit", 2);
    conf.set("fs.s3a.retry.interval", "100ms");
    conf.setInt("fs.s3a.connection.establish.timeout", 5_000);
    conf.setInt("fs.s3a.connection.timeout", 30_000);
    return conf;
  }

  /** Stops the proxy (and any child process) and waits for it; only the log stays. */
  @Override
  public void close() {
    process.descendants().forEach(ProcessHandle::destroyForcibly);
    process.destroy();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
    for (String leftover : List.of("data", "s3a-buffer", "hadoop-tmp", "tmp", "s3proxy.properties")) {
      deleteTree(dir.resolve(leftover)); // the bucket's files, buffers and the throw-away keys
    }
  }

  @Override
  public String toString() {
    return "s3proxy at " + endpoint() + ", bucket " + bucket + " (log: " + log() + ")";
  }

  /**
   * The folder holding the bucket's objects as files ({@code filesystem-nio2}: one file per key, under folders named
   * as the key's path): what the store holds, seen from its disk, even while its host is cut off.
   */
  public Path bucketFolder() {
    return dir.resolve("data").resolve(bucket);
  }

  /** Polls until the proxy answers any HTTP request (an anonymous GET / gets 403), or in a host until it listens. */
  private void awaitReady() throws IOException, InterruptedException {
    if (inHost) {
      awaitListening();
      return;
    }
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
    HttpRequest ping = HttpRequest.newBuilder(URI.create(endpoint() + "/")).timeout(Duration.ofSeconds(2)).build();
    long deadline = System.nanoTime() + STARTUP_TIMEOUT.toNanos();
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new IllegalStateException("Cannot start s3proxy: it exited with status " + process.exitValue()
            + "; see " + log() + ":\n" + tail(log()));
      }
      try {
        http.send(ping, HttpResponse.BodyHandlers.discarding());
        return;
      } catch (IOException e) {
        Thread.sleep(100); // not listening yet
      }
    }
    throw new IllegalStateException("Cannot start s3proxy: no answer on " + endpoint() + " within " + STARTUP_TIMEOUT
        + "; see " + log() + ":\n" + tail(log()));
  }

  /** Polls s3proxy's log until Jetty says its connector listens on this proxy's address and port. */
  private void awaitListening() throws IOException, InterruptedException {
    String listening = "{" + address + ":" + port + "}";
    long deadline = System.nanoTime() + STARTUP_TIMEOUT.toNanos();
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new IllegalStateException("Cannot start s3proxy: it exited with status " + process.exitValue()
            + "; see " + log() + ":\n" + tail(log()));
      }
      if (Files.exists(log()) && Files.readString(log()).lines()
          .anyMatch(l -> l.contains("Started") && l.contains("ServerConnector") && l.contains(listening))) {
        return;
      }
      Thread.sleep(100);
    }
    throw new IllegalStateException("Cannot start s3proxy: not listening on " + endpoint() + " within "
        + STARTUP_TIMEOUT + "; see " + log() + ":\n" + tail(log()));
  }

  private static String tail(Path log) {
    try {
      List<String> lines = Files.readAllLines(log);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size()));
    } catch (IOException e) {
      return "(cannot read it: " + e.getMessage() + ")";
    }
  }

  private static void deleteTree(Path root) {
    if (!Files.exists(root)) {
      return;
    }
    try (Stream<Path> all = Files.walk(root)) {
      all.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      System.err.println("Could not delete " + root + ": " + e); // leftovers under target/ are harmless
    }
  }

  private static String hex(int bytes) {
    byte[] b = new byte[bytes];
    RANDOM.nextBytes(b);
    return HexFormat.of().formatHex(b);
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /**
   * One proxy for a test class: started before its first test, stopped after its last. A failing test's message
   * gets the proxy's log file appended. Register it as
   * {@code @RegisterExtension static final S3Proxy.PerClass S3 = new S3Proxy.PerClass();}.
   */
  public static final class PerClass implements BeforeAllCallback, AfterAllCallback, TestExecutionExceptionHandler {
    private S3Proxy proxy;

    /** The running proxy. */
    public S3Proxy get() {
      if (proxy == null) {
        throw new IllegalStateException("Cannot use s3proxy: it is started before all tests (register this "
            + "extension on a static field)");
      }
      return proxy;
    }

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
      proxy = S3Proxy.start();
    }

    @Override
    public void afterAll(ExtensionContext context) {
      if (proxy != null) {
        proxy.close();
        proxy = null;
      }
    }

    @Override
    public void handleTestExecutionException(ExtensionContext context, Throwable t) throws Throwable {
      boolean fatal = t instanceof Error && !(t instanceof AssertionError);
      if (proxy == null || fatal || t instanceof TestAbortedException) {
        throw t;
      }
      String note = "\n(" + proxy + (proxy.process.isAlive() ? "" : ", exited") + ")";
      Throwable pointed = t instanceof AssertionError
          ? new AssertionError(t.getMessage() + note, t)
          : new IllegalStateException(t.getMessage() + note, t);
      throw pointed;
    }
  }
}
