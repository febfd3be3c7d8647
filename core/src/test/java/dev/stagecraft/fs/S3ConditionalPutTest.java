package dev.stagecraft.fs;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assumptions.assumeThat;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The answers to a conditional PUT that s3proxy never gives, through the line's real S3A and AWS SDK: 409 (another
 * conditional write in flight), 501 (a server without conditional writes), a 500 after the object was stored (the SDK
 * retries, and the retry gets 412), and an error that must not show the secret key. The server is a loopback HTTP
 * endpoint answering as S3 does in those cases (AtomicFilesTest races real creators on s3proxy).
 */
class S3ConditionalPutTest {
  private static final String SECRET = "stub-secret-" + Long.toHexString(System.nanoTime());

  private ScriptedS3 s3;
  private FileSystem fs;
  private Path file;

  @BeforeEach
  void start() throws IOException {
    s3 = new ScriptedS3();
    fs = FileSystem.newInstance(URI.create("s3a://" + s3.bucket + "/"), s3.configuration());
    file = new Path("s3a://" + s3.bucket + "/runs/r/ledger/3.json");
  }

  @AfterEach
  void stop() throws IOException {
    fs.close();
    s3.close();
  }

  @Test
  void a412IsFalseAtOnce() throws Exception {
    s3.script(Answer.PRECONDITION_FAILED);
    assertThat(AtomicFiles.createExclusive(fs, file, bytes("mine"))).isFalse();
    // One request: no HEAD or LIST first (two creators could both pass such a check), no HEAD after.
    assertThat(s3.requests).containsExactly("PUT /" + s3.bucket + "/runs/r/ledger/3.json");
    assertThat(s3.conditionalPuts()).singleElement().isNotNull();
  }

  @Test
  void conflictsAreRetriedUntilTheWriteGoesThrough() throws Exception {
    s3.script(Answer.CONFLICT, Answer.CONFLICT);
    assertThat(AtomicFiles.createExclusive(fs, file, bytes("mine"))).isTrue();
    assertThat(s3.conditionalPuts()).hasSize(3);
    assertThat(s3.writers).containsOnlyKeys("runs/r/ledger/3.json");
  }

  @Test
  void conflictsWithoutEndFailNamingThem() {
    s3.script(Answer.CONFLICT, Answer.CONFLICT, Answer.CONFLICT, Answer.CONFLICT, Answer.CONFLICT, Answer.CONFLICT,
        Answer.CONFLICT, Answer.CONFLICT);
    assertThatThrownBy(() -> AtomicFiles.createExclusive(fs, file, bytes("mine")))
        .isInstanceOf(IOException.class)
        .hasMessage("Cannot create " + file + ": conditional writes kept conflicting (409) after 8 attempts");
    assertThat(s3.writers).isEmpty();
  }

  @Test
  void aServerWithoutConditionalWritesIsNamedAndRefused() throws Exception {
    s3.script(Answer.NOT_IMPLEMENTED);
    assertThat(AtomicFiles.exclusiveCreateUnsupported(fs, file.getParent()))
        .contains("the S3 server answered 501 (NotImplemented) to a PUT with If-None-Match");
    s3.script(Answer.NOT_IMPLEMENTED);
    assertThatThrownBy(() -> AtomicFiles.createExclusive(fs, file, bytes("mine")))
        .isInstanceOf(AtomicFiles.ExclusiveCreateUnsupported.class);
    assertThat(s3.writers).isEmpty();
  }

  /** The first PUT is stored but answered 500; the SDK sends it again and gets 412. The object is this call's. */
  @Test
  void aWriteStoredButAnsweredWithAnErrorIsStillOurs() throws Exception {
    s3.script(Answer.STORED_THEN_INTERNAL_ERROR);
    assertThat(AtomicFiles.createExclusive(fs, file, bytes("mine"))).isTrue();
    List<String> puts = s3.conditionalPuts();
    assertThat(puts).hasSize(2).doesNotContainNull();
    assertThat(puts.get(1)).as("both attempts carry one writer token").isEqualTo(puts.get(0));
    assertThat(s3.heads).isEqualTo(1);
  }

  /** A throttled PUT is retried by the SDK and then finds another writer's object: lost, even though it retried. */
  @Test
  void aRetriedWriteThatFindsAnotherWritersObjectLost() throws Exception {
    s3.writers.put("runs/r/ledger/3.json", "someone-else");
    s3.script(Answer.SLOW_DOWN);
    assertThat(AtomicFiles.createExclusive(fs, file, bytes("mine"))).isFalse();
    assertThat(s3.conditionalPuts()).hasSize(2);
    assertThat(s3.heads).isEqualTo(1);
    assertThat(s3.writers).containsEntry("runs/r/ledger/3.json", "someone-else");
  }

  @Test
  void anyOtherAnswerFailsNamingItAndNotTheSecret() {
    s3.script(Answer.ACCESS_DENIED);
    assertThatThrownBy(() -> AtomicFiles.createExclusive(fs, file, bytes("mine")))
        .isInstanceOf(IOException.class)
        .hasMessageStartingWith("Cannot create " + file + ": 403 AccessDenied")
        .satisfies(e -> assertThat(stackTrace(e)).doesNotContain(SECRET));
  }

  /** Hadoop 3.5's switch for stores without conditional writes is honoured (it does not exist in Hadoop 3.3). */
  @Test
  void s3asSwitchForStoresWithoutConditionalWritesIsHonoured() throws Exception {
    assumeThat(System.getProperty("stagecraft.spark.line")).isEqualTo("4");
    Configuration conf = s3.configuration();
    conf.setBoolean("fs.s3a.bucket." + s3.bucket + ".create.conditional.enabled", false);
    try (FileSystem off = FileSystem.newInstance(URI.create("s3a://" + s3.bucket + "/"), conf)) {
      assertThatThrownBy(() -> AtomicFiles.createExclusive(off, file, bytes("mine")))
          .isInstanceOf(AtomicFiles.ExclusiveCreateUnsupported.class)
          .hasMessage("fs.s3a.create.conditional.enabled is false for bucket " + s3.bucket
              + " (S3A's switch for a store without conditional writes)");
    }
    assertThat(s3.conditionalPuts()).isEmpty();
  }

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private static String stackTrace(Throwable t) {
    java.io.StringWriter out = new java.io.StringWriter();
    t.printStackTrace(new java.io.PrintWriter(out));
    return out.toString();
  }

  /** How the server answers the next conditional PUT. */
  enum Answer {
    PRECONDITION_FAILED(412, "PreconditionFailed", false),
    CONFLICT(409, "ConditionalRequestConflict", false),
    NOT_IMPLEMENTED(501, "NotImplemented", false),
    STORED_THEN_INTERNAL_ERROR(500, "InternalError", true),
    SLOW_DOWN(503, "SlowDown", false),
    ACCESS_DENIED(403, "AccessDenied", false);

    final int status;
    final String code;
    final boolean stores;

    Answer(int status, String code, boolean stores) {
      this.status = status;
      this.code = code;
      this.stores = stores;
    }
  }

  /**
   * One bucket on loopback. A PUT with {@code If-None-Match: *} gets the next scripted answer, or once the script is
   * used up what S3 answers (412 if the key exists, else it stores it). Other PUTs store; HEAD reports the stored
   * object's writer token ({@code x-amz-meta-stagecraft-writer}); anything else finds nothing. Signatures are not
   * checked.
   */
  static final class ScriptedS3 implements AutoCloseable {
    final String bucket = "stub-" + Long.toHexString(System.nanoTime());
    /** Key → writer token of the object stored there. */
    final Map<String, String> writers = new ConcurrentHashMap<>();

    private final Deque<Answer> script = new ArrayDeque<>();
    /** The writer token of each conditional PUT received, in order (null if it had none). */
    private final List<String> conditionalPuts = new ArrayList<>();

    volatile int heads;
    /** Every request, as "METHOD /path?query". */
    final List<String> requests = java.util.Collections.synchronizedList(new ArrayList<>());
    private final HttpServer server;
    private final java.nio.file.Path tmp;

    ScriptedS3() throws IOException {
      tmp = Files.createTempDirectory("scripted-s3");
      server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
      server.createContext("/", this::handle);
      server.start();
    }

    synchronized void script(Answer... answers) {
      script.addAll(List.of(answers));
    }

    synchronized List<String> conditionalPuts() {
      return List.copyOf(conditionalPuts);
    }

    Configuration configuration() {
      Configuration conf = new Configuration();
      conf.set("fs.s3a.endpoint", "http://127.0.0.1:" + server.getAddress().getPort());
      conf.set("fs.s3a.endpoint.region", "us-east-1");
      conf.setBoolean("fs.s3a.path.style.access", true);
      conf.setBoolean("fs.s3a.connection.ssl.enabled", false);
      conf.set("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider");
      conf.set("fs.s3a.access.key", "AKSTUB");
      conf.set("fs.s3a.secret.key", SECRET);
      conf.set("fs.s3a.directory.marker.retention", "keep");
      conf.set("fs.s3a.buffer.dir", tmp.resolve("buffer").toString());
      conf.set("hadoop.tmp.dir", tmp.resolve("hadoop").toString());
      conf.setInt("fs.s3a.attempts.maximum", 2); // the SDK's retries: one 500 or 503 is retried
      conf.setInt("fs.s3a.retry.limit", 1);
      conf.set("fs.s3a.retry.interval", "10ms");
      conf.set("fs.s3a.retry.throttle.interval", "10ms");
      return conf;
    }

    private void handle(HttpExchange x) throws IOException {
      try (x; InputStream in = x.getRequestBody()) {
        byte[] body = content(x, in.readAllBytes());
        requests.add(x.getRequestMethod() + " " + x.getRequestURI());
        String prefix = "/" + bucket + "/";
        String path = x.getRequestURI().getPath();
        String key = path.startsWith(prefix) ? path.substring(prefix.length()) : "";
        String writer = x.getRequestHeaders().getFirst("x-amz-meta-stagecraft-writer");
        switch (x.getRequestMethod()) {
          case "PUT" -> put(x, key, writer, "*".equals(x.getRequestHeaders().getFirst("If-None-Match")), body);
          case "HEAD" -> head(x, key);
          default -> error(x, 404, "NoSuchKey");
        }
      }
    }

    private void put(HttpExchange x, String key, String writer, boolean conditional, byte[] body) throws IOException {
      if (!conditional) {
        writers.put(key, String.valueOf(writer));
        ok(x, body);
        return;
      }
      Answer answer;
      synchronized (this) {
        conditionalPuts.add(writer);
        answer = script.poll();
      }
      if (answer == null) {
        if (writers.putIfAbsent(key, String.valueOf(writer)) == null) {
          ok(x, body);
        } else {
          error(x, 412, "PreconditionFailed");
        }
        return;
      }
      if (answer.stores) {
        writers.putIfAbsent(key, String.valueOf(writer));
      }
      error(x, answer.status, answer.code);
    }

    private void head(HttpExchange x, String key) throws IOException {
      heads++;
      String writer = writers.get(key);
      if (writer == null) {
        x.sendResponseHeaders(404, -1);
        return;
      }
      x.getResponseHeaders().add("x-amz-meta-stagecraft-writer", writer);
      x.getResponseHeaders().add("ETag", "\"" + Integer.toHexString(writer.hashCode()) + "\"");
      x.getResponseHeaders().add("Last-Modified",
          DateTimeFormatter.RFC_1123_DATE_TIME.format(ZonedDateTime.now(ZoneOffset.UTC)));
      x.getResponseHeaders().add("Content-Type", "application/octet-stream");
      // As S3 does (S3A reads it); HttpServer sets no length on a HEAD. The body's length is not kept: any will do.
      x.getResponseHeaders().add("Content-Length", "4");
      x.sendResponseHeaders(200, -1);
    }

    /** The ETag of a single PUT is its content's MD5, which SDK v1 checks. */
    private static void ok(HttpExchange x, byte[] body) throws IOException {
      try {
        byte[] md5 = java.security.MessageDigest.getInstance("MD5").digest(body);
        x.getResponseHeaders().add("ETag", "\"" + java.util.HexFormat.of().formatHex(md5) + "\"");
      } catch (java.security.NoSuchAlgorithmException e) {
        throw new IllegalStateException(e);
      }
      x.sendResponseHeaders(200, -1);
    }

    /**
     * The object's bytes: the body itself, or decoded from {@code aws-chunked} framing ("SIZE-IN-HEX;chunk-signature=…
     * CRLF data CRLF", ending with a chunk of size 0), which SDK v1 uses for a signed upload over plain HTTP.
     */
    private static byte[] content(HttpExchange x, byte[] body) {
      String sha = x.getRequestHeaders().getFirst("x-amz-content-sha256");
      if (sha == null || !sha.startsWith("STREAMING-")) {
        return body;
      }
      java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
      int at = 0;
      while (at < body.length) {
        int eol = at;
        while (body[eol] != '\r') {
          eol++;
        }
        String header = new String(body, at, eol - at, StandardCharsets.US_ASCII);
        int size = Integer.parseInt(header.split(";", 2)[0].trim(), 16);
        if (size == 0) {
          break;
        }
        out.write(body, eol + 2, size);
        at = eol + 2 + size + 2;
      }
      return out.toByteArray();
    }

    private static void error(HttpExchange x, int status, String code) throws IOException {
      byte[] xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code + "</Code><Message>scripted "
          + code + "</Message><RequestId>stub</RequestId></Error>").getBytes(StandardCharsets.UTF_8);
      x.getResponseHeaders().add("Content-Type", "application/xml");
      x.getResponseHeaders().add("x-amz-request-id", "stub");
      if ("HEAD".equals(x.getRequestMethod())) {
        x.sendResponseHeaders(status, -1);
        return;
      }
      x.sendResponseHeaders(status, xml.length);
      x.getResponseBody().write(xml);
    }

    @Override
    public void close() throws IOException {
      server.stop(0);
      try (var files = Files.walk(tmp)) {
        files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
  }
}
