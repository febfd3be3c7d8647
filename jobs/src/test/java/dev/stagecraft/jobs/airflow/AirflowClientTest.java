package dev.stagecraft.jobs.airflow;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The client's pieces that need no server (AirflowIT tests it against a real Airflow). */
class AirflowClientTest {
  @TempDir Path dir;

  @Test
  void readsTheExpiryOfAJwtWithoutCheckingItsSignature() {
    String payload = Base64.getUrlEncoder().withoutPadding()
        .encodeToString("{\"sub\":\"a\",\"exp\":1795918594}".getBytes(StandardCharsets.UTF_8));
    assertThat(AirflowClient.expiryOf("eyJhbGciOiJIUzUxMiJ9." + payload + ".sig"))
        .contains(Instant.ofEpochSecond(1795918594));
    assertThat(AirflowClient.expiryOf("not-a-jwt")).isEmpty();
    assertThat(AirflowClient.expiryOf("a.%%%.c")).isEmpty();
  }

  @Test
  void summarisesARunOnOneLineNamingTasksThatAreNotDone() {
    DagRun run = new DagRun("d", "r1", DagRunState.RUNNING, Optional.empty(), Optional.empty(), Map.of());
    String line = AirflowClient.summary(run, List.of(
        new TaskInstance("a", Optional.of("success"), 1),
        new TaskInstance("b", Optional.of("running"), 1),
        new TaskInstance("c", Optional.of("up_for_retry"), 1),
        new TaskInstance("d", Optional.empty(), 0)));
    assertThat(line).isEqualTo("dag d run r1: running — 1 none, 1 running (b), 1 success, 1 up_for_retry (c)");
  }

  @Test
  void credentialsComeFromTheEnvironmentOrAFileAndNeverShowThePassword() throws Exception {
    AirflowCredentials env = AirflowCredentials.resolve(
        Map.of(AirflowCredentials.PASSWORD_ENV, "s3cret", AirflowCredentials.USERNAME_ENV, "ops"), Optional.empty());
    assertThat(env.username()).isEqualTo("ops");
    assertThat(env.toString()).doesNotContain("s3cret").contains("ops");
    assertThat(env.scrub("bad input: s3cret!")).isEqualTo("bad input: ***!");

    Path file = dir.resolve("airflow.properties");
    Files.writeString(file, "username = etl\npassword = p@ss word\n");
    AirflowCredentials fromFile = AirflowCredentials.resolve(Map.of(AirflowCredentials.FILE_ENV, file.toString()),
        Optional.empty());
    assertThat(fromFile.username()).isEqualTo("etl");
    assertThat(fromFile.password()).isEqualTo("p@ss word");

    assertThatThrownBy(() -> AirflowCredentials.resolve(Map.of(), Optional.empty()))
        .isInstanceOf(StagecraftException.class)
        .hasMessageStartingWith("Cannot log in to Airflow: no credentials (set STAGECRAFT_AIRFLOW_USERNAME and "
            + "STAGECRAFT_AIRFLOW_PASSWORD");
    Files.writeString(file, "username=etl\n");
    assertThatThrownBy(() -> AirflowCredentials.resolve(Map.of(), Optional.of(file)))
        .hasMessage("Invalid Airflow credentials file " + file + ": no 'password=' line");
    assertThatThrownBy(() -> AirflowCredentials.resolve(Map.of(), Optional.of(dir.resolve("nope"))))
        .hasMessage("Cannot read Airflow credentials file " + dir.resolve("nope") + ": no such file");
  }

  @Test
  void mapsHttpStatusesToReasonsAndReasonsToExitCategories() {
    assertThat(AirflowException.reasonOf(401)).isEqualTo(AirflowException.Reason.UNAUTHORIZED);
    assertThat(AirflowException.reasonOf(403)).isEqualTo(AirflowException.Reason.FORBIDDEN);
    assertThat(AirflowException.reasonOf(404)).isEqualTo(AirflowException.Reason.NOT_FOUND);
    assertThat(AirflowException.reasonOf(409)).isEqualTo(AirflowException.Reason.CONFLICT);
    assertThat(AirflowException.reasonOf(422)).isEqualTo(AirflowException.Reason.INVALID);
    assertThat(AirflowException.reasonOf(503)).isEqualTo(AirflowException.Reason.SERVER_ERROR);
    assertThat(AirflowException.Reason.UNREACHABLE.category()).isEqualTo(ErrorCategory.EXTERNAL);
    assertThat(AirflowException.Reason.RUN_FAILED.category().exitCode()).isEqualTo(1);
    assertThat(AirflowException.Reason.UNAUTHORIZED.category().exitCode()).isEqualTo(2);
  }

  @Test
  void rejectsUrlsThatAreNotHttp() {
    AirflowCredentials c = new AirflowCredentials("u", "p");
    assertThatThrownBy(() -> AirflowClient.Config.of("localhost:8080", c))
        .isInstanceOf(AirflowException.class)
        .hasMessage("Invalid Airflow URL 'localhost:8080' (expected http(s)://HOST:PORT, e.g. http://localhost:8080)");
    assertThat(AirflowClient.Config.of("http://h:8080/", c).baseUrl().toString()).isEqualTo("http://h:8080");
  }

  /**
   * An HTTP server on loopback that answers as Airflow does when its metadata database is locked: HTTP 500
   * "Database error" to the first {@code failures} triggers, then the run.
   */
  static com.sun.net.httpserver.HttpServer lockedThenFine(int failures, java.util.concurrent.atomic.AtomicInteger calls)
      throws Exception {
    return airflow("/api/v2/dags/d/dagRuns", x -> {
      if (calls.incrementAndGet() <= failures) {
        reply(x, 500, "{\"detail\": \"Database error\"}");
      } else {
        reply(x, 200, "{\"dag_id\": \"d\", \"dag_run_id\": \"r1\", \"state\": \"queued\", \"conf\": {}}");
      }
    });
  }

  /** A loopback HTTP server that hands out tokens and answers {@code path} with {@code handler}; started. */
  static com.sun.net.httpserver.HttpServer airflow(String path, com.sun.net.httpserver.HttpHandler handler)
      throws Exception {
    var server = com.sun.net.httpserver.HttpServer.create(
        new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext("/auth/token", x -> reply(x, 201, "{\"access_token\": \"t\"}"));
    server.createContext(path, handler);
    server.start();
    return server;
  }

  static void reply(com.sun.net.httpserver.HttpExchange x, int status, String json) throws java.io.IOException {
    x.getRequestBody().readAllBytes();
    byte[] b = json.getBytes(StandardCharsets.UTF_8);
    x.getResponseHeaders().add("Content-Type", "application/json");
    x.sendResponseHeaders(status, b.length);
    x.getResponseBody().write(b);
    x.close();
  }

  @Test
  void aTransientServerErrorIsRetriedAndAPersistentOneIsReportedAfterThreeAttempts() throws Exception {
    var calls = new java.util.concurrent.atomic.AtomicInteger();
    var server = lockedThenFine(2, calls);
    try {
      AirflowClient client = new AirflowClient(AirflowClient.Config.of(
          "http://127.0.0.1:" + server.getAddress().getPort(), new AirflowCredentials("u", "p")));
      assertThat(client.trigger("d", Optional.of("r1"), Map.of()).runId()).isEqualTo("r1");
      assertThat(calls.get()).isEqualTo(3);
    } finally {
      server.stop(0);
    }
    var always = new java.util.concurrent.atomic.AtomicInteger();
    var broken = lockedThenFine(Integer.MAX_VALUE, always);
    try {
      AirflowClient client = new AirflowClient(AirflowClient.Config.of(
          "http://127.0.0.1:" + broken.getAddress().getPort(), new AirflowCredentials("u", "p")));
      assertThatThrownBy(() -> client.trigger("d", Optional.of("r1"), Map.of()))
          .isInstanceOfSatisfying(AirflowException.class,
              e -> assertThat(e.reason()).isEqualTo(AirflowException.Reason.SERVER_ERROR))
          .hasMessageContaining("HTTP 500").hasMessageContaining("Database error");
      assertThat(always.get()).isEqualTo(AirflowClient.TRANSIENT_ATTEMPTS);
    } finally {
      broken.stop(0);
    }
  }

  /** A run whose GETs answer HTTP 503 {@code failures} times, then "success". */
  static com.sun.net.httpserver.HttpServer downThenDone(int failures, java.util.concurrent.atomic.AtomicInteger calls)
      throws Exception {
    return airflow("/api/v2/dags/d/dagRuns/r1", x -> {
      if (calls.incrementAndGet() <= failures) {
        reply(x, 503, "{\"detail\": \"restarting\"}");
      } else if (x.getRequestURI().getPath().endsWith("/taskInstances")) {
        reply(x, 200, "{\"task_instances\": [], \"total_entries\": 0}");
      } else {
        reply(x, 200, "{\"dag_id\": \"d\", \"dag_run_id\": \"r1\", \"state\": \"success\", \"conf\": {}}");
      }
    });
  }

  @Test
  void awaitKeepsPollingThroughAShortOutageAndGivesUpOnALongOne() throws Exception {
    var calls = new java.util.concurrent.atomic.AtomicInteger();
    // One whole poll fails (all its attempts), the next succeeds.
    var server = downThenDone(AirflowClient.TRANSIENT_ATTEMPTS, calls);
    try {
      AirflowClient client = new AirflowClient(AirflowClient.Config.of(
          "http://127.0.0.1:" + server.getAddress().getPort(), new AirflowCredentials("u", "p"))
          .withPoll(java.time.Duration.ofMillis(10)));
      java.util.List<String> progress = new java.util.concurrent.CopyOnWriteArrayList<>();
      assertThat(client.await("d", "r1", java.time.Duration.ofMinutes(5), progress::add).state())
          .isEqualTo(DagRunState.SUCCESS);
      assertThat(progress).anySatisfy(line -> assertThat(line).startsWith("Airflow did not answer (")
          .contains("HTTP 503").contains("retrying for up to 120s"));
    } finally {
      server.stop(0);
    }
    // Down for good: each poll's clock reading is a minute later, so the outage passes its grace on the third.
    var down = downThenDone(Integer.MAX_VALUE, new java.util.concurrent.atomic.AtomicInteger());
    try {
      java.time.Instant t0 = java.time.Instant.parse("2026-11-28T00:00:00Z");
      java.util.concurrent.atomic.AtomicInteger reads = new java.util.concurrent.atomic.AtomicInteger();
      java.time.Clock jumping = new java.time.Clock() {
        @Override
        public java.time.ZoneId getZone() {
          return java.time.ZoneOffset.UTC;
        }

        @Override
        public java.time.Clock withZone(java.time.ZoneId zone) {
          return this;
        }

        @Override
        public java.time.Instant instant() {
          return t0.plus(java.time.Duration.ofMinutes(reads.getAndIncrement()));
        }
      };
      AirflowClient client = new AirflowClient(AirflowClient.Config.of(
          "http://127.0.0.1:" + down.getAddress().getPort(), new AirflowCredentials("u", "p"))
          .withPoll(java.time.Duration.ofMillis(10)), jumping);
      assertThatThrownBy(() -> client.await("d", "r1", java.time.Duration.ofHours(5), line -> { }))
          .isInstanceOfSatisfying(AirflowException.class,
              e -> assertThat(e.reason()).isEqualTo(AirflowException.Reason.SERVER_ERROR))
          .hasMessageContaining("HTTP 503");
    } finally {
      down.stop(0);
    }
  }

  @Test
  void aPollsRequestsGetAQuarterOfTheOutageGraceWithinBounds() {
    AirflowClient.Config c = AirflowClient.Config.of("http://h:8080", new AirflowCredentials("u", "p"));
    assertThat(c.requestTimeout()).isEqualTo(java.time.Duration.ofSeconds(90));
    assertThat(c.outageGrace()).isEqualTo(java.time.Duration.ofMinutes(2));
    assertThat(c.pollRequestTimeout()).isEqualTo(java.time.Duration.ofSeconds(30));
    assertThat(c.withOutageGrace(java.time.Duration.ofSeconds(30)).pollRequestTimeout())
        .isEqualTo(java.time.Duration.ofMillis(7500));
    assertThat(c.withOutageGrace(java.time.Duration.ofSeconds(8)).pollRequestTimeout())
        .as("at least 5 s").isEqualTo(java.time.Duration.ofSeconds(5));
    assertThat(c.withOutageGrace(java.time.Duration.ofHours(1)).pollRequestTimeout())
        .as("at most the request timeout").isEqualTo(java.time.Duration.ofSeconds(90));
    assertThat(c.withRequestTimeout(java.time.Duration.ofSeconds(3)).pollRequestTimeout())
        .isEqualTo(java.time.Duration.ofSeconds(3));
    assertThatThrownBy(() -> c.withOutageGrace(java.time.Duration.ZERO))
        .hasMessage("Invalid outage grace: PT0S (expected more than 0 seconds)");

    AirflowClient.Patience p = new AirflowClient.Patience(java.time.Duration.ofSeconds(30), t0().plusSeconds(12));
    assertThat(p.next(t0())).isEqualTo(java.time.Duration.ofSeconds(12));
    assertThat(p.next(t0().minusSeconds(60))).isEqualTo(java.time.Duration.ofSeconds(30));
    assertThat(p.next(t0().plusSeconds(60))).as("one last try, not none").isEqualTo(java.time.Duration.ofSeconds(1));
    assertThat(AirflowClient.seconds(java.time.Duration.ofMillis(7500))).isEqualTo("7.5s");
    assertThat(AirflowClient.seconds(java.time.Duration.ofMillis(31_400))).isEqualTo("31s");
    assertThat(AirflowClient.seconds(java.time.Duration.ofSeconds(120))).isEqualTo("120s");
  }

  static java.time.Instant t0() {
    return java.time.Instant.parse("2026-11-28T00:00:00Z");
  }

  /**
   * A peer that went silent, as behind a network partition: the kernel completes TCP handshakes into the listen
   * backlog, but nothing is ever accepted, read or answered, and no connection is reset.
   */
  static java.net.ServerSocket silentPeer() throws Exception {
    return new java.net.ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress());
  }

  @Test
  void aRequestToASilentAirflowEndsAtItsTimeout() throws Exception {
    try (var silent = silentPeer()) {
      AirflowClient client = new AirflowClient(AirflowClient.Config.of(
          "http://127.0.0.1:" + silent.getLocalPort(), new AirflowCredentials("u", "s3cret"))
          .withRequestTimeout(java.time.Duration.ofSeconds(2)));
      long t = System.nanoTime();
      assertThatThrownBy(() -> client.dagRun("d", "r1"))
          .isInstanceOfSatisfying(AirflowException.class,
              e -> assertThat(e.reason()).isEqualTo(AirflowException.Reason.UNREACHABLE))
          .hasMessage("Cannot log in to Airflow at http://127.0.0.1:" + silent.getLocalPort() + " as 'u': Airflow at "
              + "http://127.0.0.1:" + silent.getLocalPort() + " is unreachable (no answer within 2s)");
      assertThat(java.time.Duration.ofNanos(System.nanoTime() - t)).isLessThan(java.time.Duration.ofSeconds(6));
    }
  }

  @Test
  void aWaitOnASilentAirflowGivesUpSoonAfterItsGraceNamingTheUrlAndHowLong() throws Exception {
    try (var silent = silentPeer()) {
      String url = "http://127.0.0.1:" + silent.getLocalPort();
      AirflowClient client = new AirflowClient(AirflowClient.Config.of(url, new AirflowCredentials("u", "s3cret"))
          .withPoll(java.time.Duration.ofMillis(100)).withOutageGrace(java.time.Duration.ofSeconds(3)));
      List<Outage> outages = new java.util.concurrent.CopyOnWriteArrayList<>();
      long t = System.nanoTime();
      // The default request timeout (90 s) must not hold the wait: no request of a poll outlives the grace.
      assertThatThrownBy(() -> client.await("d", "r1", java.time.Duration.ofHours(5), line -> { }, outages::add))
          .isInstanceOfSatisfying(AirflowException.class, e -> {
            assertThat(e.reason()).isEqualTo(AirflowException.Reason.UNREACHABLE);
            assertThat(e.category()).isEqualTo(ErrorCategory.EXTERNAL);
          })
          .hasMessageStartingWith("Cannot wait for run 'r1' of DAG 'd': Airflow at " + url + " has been unreachable "
              + "for 3")
          .hasMessageContaining("(longer than the 3s a wait rides out); last error: Cannot log in to Airflow at ")
          .hasMessageContaining("no answer within")
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("s3cret").doesNotContain("\n"));
      assertThat(java.time.Duration.ofNanos(System.nanoTime() - t)).isLessThan(java.time.Duration.ofSeconds(8));
      assertThat(outages).singleElement().satisfies(o -> {
        assertThat(o.riddenOut()).isFalse();
        assertThat(o.length()).isGreaterThanOrEqualTo(java.time.Duration.ofSeconds(3));
      });
    }
  }

  /** A whole Airflow that is silent (holds every request unanswered) until {@code silentUntil}, then fine. */
  static com.sun.net.httpserver.HttpServer silentThenDone(long silentUntilNanos) throws Exception {
    var server = com.sun.net.httpserver.HttpServer.create(
        new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0), 0);
    server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
    server.createContext("/", x -> {
      if (System.nanoTime() < silentUntilNanos) {
        try {
          Thread.sleep(30_000); // longer than any timeout here: the client must give up on this request
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        x.close();
        return;
      }
      String path = x.getRequestURI().getPath();
      if (path.equals("/auth/token")) {
        reply(x, 201, "{\"access_token\": \"t\"}");
      } else if (path.endsWith("/taskInstances")) {
        reply(x, 200, "{\"task_instances\": [], \"total_entries\": 0}");
      } else {
        reply(x, 200, "{\"dag_id\": \"d\", \"dag_run_id\": \"r1\", \"state\": \"success\", \"conf\": {}}");
      }
    });
    server.start();
    return server;
  }

  @Test
  void aWaitRidesOutASilenceShorterThanItsGraceAndReportsIt() throws Exception {
    var server = silentThenDone(System.nanoTime() + java.time.Duration.ofSeconds(2).toNanos());
    try {
      AirflowClient client = new AirflowClient(AirflowClient.Config.of(
          "http://127.0.0.1:" + server.getAddress().getPort(), new AirflowCredentials("u", "p"))
          .withPoll(java.time.Duration.ofMillis(100)).withOutageGrace(java.time.Duration.ofSeconds(12)));
      List<String> progress = new java.util.concurrent.CopyOnWriteArrayList<>();
      List<Outage> outages = new java.util.concurrent.CopyOnWriteArrayList<>();
      assertThat(client.await("d", "r1", java.time.Duration.ofMinutes(1), progress::add, outages::add).state())
          .isEqualTo(DagRunState.SUCCESS);
      // The request held by the silent server was abandoned after the poll's timeout (5 s), the next one answered.
      assertThat(outages).singleElement().satisfies(o -> {
        assertThat(o.riddenOut()).isTrue();
        assertThat(o.length()).isBetween(java.time.Duration.ofSeconds(4), java.time.Duration.ofSeconds(11));
        assertThat(o.lastError()).contains("no answer within 5s");
        assertThat(o.toDetail()).containsEntry("ridden_out", true).containsKeys("since", "seconds", "last_error");
      });
      assertThat(progress).anySatisfy(l -> assertThat(l).startsWith("Airflow did not answer (")
          .contains("retrying for up to 12s"));
      assertThat(progress).last().asString().startsWith("dag d run r1: success — ")
          .contains("; Airflow at http://127.0.0.1:" + server.getAddress().getPort() + " answered again after ");
    } finally {
      server.stop(0);
    }
  }
}
