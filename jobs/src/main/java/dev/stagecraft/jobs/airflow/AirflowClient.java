package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.jobs.airflow.AirflowException.Reason;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * A client for Airflow 3's stable REST API ({@code /api/v2}), authenticated with a JWT from {@code /auth/token}.
 *
 * <p>The token is fetched on first use and again shortly before it expires (its {@code exp} claim) or when Airflow
 * answers 401 to it. Every failure is an {@link AirflowException} with a {@link Reason}; no message carries the
 * password or a token. A 404 for a DAG is retried for {@link Config#notFoundGrace()}: Airflow answers 404 until its
 * DAG processor has parsed a new DAG file.
 *
 * <p>Thread-safe: one client may serve several threads.
 */
public final class AirflowClient {
  private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(AirflowClient.class);

  /** Environment variable with Airflow's base URL (without {@code /api/v2}). */
  public static final String URL_ENV = "STAGECRAFT_AIRFLOW_URL";
  public static final String URL_DEFAULT = "http://localhost:8080";
  /**
   * How long a 404 for a DAG is retried by default (a DAG file not parsed yet), in seconds: a constant the CLI can
   * use without loading this class (and Jackson, which `--help` on a plain JVM lacks).
   */
  public static final long NOT_FOUND_GRACE_SECONDS_DEFAULT = 30;
  /** {@link #NOT_FOUND_GRACE_SECONDS_DEFAULT} as a duration. */
  public static final Duration NOT_FOUND_GRACE_DEFAULT = Duration.ofSeconds(NOT_FOUND_GRACE_SECONDS_DEFAULT);
  /**
   * How long one request may take by default, connecting included: an Airflow on SQLite can stall for tens of seconds
   * under load, and a trigger (a POST) is better not abandoned early.
   */
  public static final Duration REQUEST_TIMEOUT_DEFAULT = Duration.ofSeconds(90);
  /**
   * How long a TCP connection may take to open: milliseconds on a working network; 10 s covers the operating system's
   * first SYN retries (1 s, then 2 s, then 4 s apart), so only a dead or silent network runs into it.
   */
  static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(10);
  /**
   * How long {@link #await} keeps polling through an outage by default — Airflow unreachable or answering 5xx even
   * after each request's own retries — before it gives up, in seconds: a web server restart or a network blip must not
   * fail a wait of hours. A constant the CLI can use without loading this class.
   */
  public static final long OUTAGE_GRACE_SECONDS_DEFAULT = 120;
  /** {@link #OUTAGE_GRACE_SECONDS_DEFAULT} as a duration. */
  public static final Duration OUTAGE_GRACE_DEFAULT = Duration.ofSeconds(OUTAGE_GRACE_SECONDS_DEFAULT);
  /** The least time any request gets, even when its budget is (nearly) spent: one last try, not none. */
  static final Duration MIN_REQUEST_TIMEOUT = Duration.ofSeconds(1);
  /** The least time one of {@link #await}'s polls gets (see {@link Config#pollRequestTimeout()}). */
  static final Duration POLL_REQUEST_TIMEOUT_FLOOR = Duration.ofSeconds(5);

  /** How often {@link #await} polls by default. */
  public static final Duration POLL_DEFAULT = Duration.ofSeconds(2);
  /** A token is renewed this long before its {@code exp}. */
  static final Duration TOKEN_MARGIN = Duration.ofSeconds(30);

  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * Where Airflow is and how patient to be.
   *
   * @param baseUrl e.g. {@code http://localhost:8080}
   * @param requestTimeout per HTTP request, connecting and reading the whole answer included
   * @param notFoundGrace how long a DAG's 404 is retried (zero: not at all)
   * @param poll the interval of {@link #await}'s polls and of 404 retries
   * @param outageGrace how long {@link #await} polls on while Airflow does not answer
   */
  public record Config(URI baseUrl, AirflowCredentials credentials, Duration requestTimeout, Duration notFoundGrace,
      Duration poll, Duration outageGrace) {
    public Config {
      requireNonNull(baseUrl, "baseUrl is null");
      String scheme = baseUrl.getScheme();
      if (scheme == null || !(scheme.equals("http") || scheme.equals("https")) || baseUrl.getHost() == null) {
        throw new AirflowException(Reason.INVALID, 0,
            "Invalid Airflow URL '" + baseUrl + "' (expected http(s)://HOST:PORT, e.g. " + URL_DEFAULT + ")");
      }
      requireNonNull(credentials, "credentials is null");
      requireNonNull(notFoundGrace, "notFoundGrace is null");
      requireNonNull(poll, "poll is null");
      if (requestTimeout == null || requestTimeout.isNegative() || requestTimeout.isZero()) {
        throw new IllegalArgumentException("Invalid request timeout: " + requestTimeout + " (expected more than 0)");
      }
      if (outageGrace == null || outageGrace.isNegative() || outageGrace.isZero()) {
        throw new AirflowException(Reason.INVALID, 0,
            "Invalid outage grace: " + outageGrace + " (expected more than 0 seconds)");
      }
    }

    public static Config of(String baseUrl, AirflowCredentials credentials) {
      String u = baseUrl.strip();
      u = u.endsWith("/") ? u.substring(0, u.length() - 1) : u;
      URI uri;
      try {
        uri = URI.create(u);
      } catch (IllegalArgumentException e) {
        throw new AirflowException(Reason.INVALID, 0,
            "Invalid Airflow URL '" + baseUrl + "' (expected http(s)://HOST:PORT, e.g. " + URL_DEFAULT + ")");
      }
      return new Config(uri, credentials, REQUEST_TIMEOUT_DEFAULT, NOT_FOUND_GRACE_DEFAULT, POLL_DEFAULT,
          OUTAGE_GRACE_DEFAULT);
    }

    public Config withNotFoundGrace(Duration grace) {
      return new Config(baseUrl, credentials, requestTimeout, grace, poll, outageGrace);
    }

    public Config withPoll(Duration interval) {
      return new Config(baseUrl, credentials, requestTimeout, notFoundGrace, interval, outageGrace);
    }

    public Config withOutageGrace(Duration grace) {
      return new Config(baseUrl, credentials, requestTimeout, notFoundGrace, poll, grace);
    }

    public Config withRequestTimeout(Duration timeout) {
      return new Config(baseUrl, credentials, timeout, notFoundGrace, poll, outageGrace);
    }

    /**
     * How long one request of {@link #await}'s polls may take: a quarter of the outage grace (at least
     * {@link #POLL_REQUEST_TIMEOUT_FLOOR}, at most {@link #requestTimeout}). A poll is a GET, safe to abandon and
     * repeat; a request lost to a silent network (no reset: it would wait for TCP to give up, many minutes) is
     * abandoned soon enough that a fresh connection can still be tried several times within the grace, so an outage
     * shorter than about half the grace is ridden out. No request of a poll outlives the grace either.
     */
    public Duration pollRequestTimeout() {
      Duration quarter = outageGrace.dividedBy(4);
      Duration t = quarter.compareTo(POLL_REQUEST_TIMEOUT_FLOOR) < 0 ? POLL_REQUEST_TIMEOUT_FLOOR : quarter;
      return t.compareTo(requestTimeout) > 0 ? requestTimeout : t;
    }
  }

  /**
   * How long the requests of one call may take: each at most {@code perRequest}, none past {@code until} (but each at
   * least {@link #MIN_REQUEST_TIMEOUT}).
   */
  record Patience(Duration perRequest, Instant until) {
    Duration next(Instant now) {
      Duration left = until.equals(Instant.MAX) ? perRequest : Duration.between(now, until);
      Duration t = left.compareTo(perRequest) < 0 ? left : perRequest;
      return t.compareTo(MIN_REQUEST_TIMEOUT) < 0 ? MIN_REQUEST_TIMEOUT : t;
    }

    boolean spent(Instant now) {
      return !now.isBefore(until);
    }
  }

  private final Config config;
  private final HttpClient http;
  private final Clock clock;
  private String token; // guarded by this
  private Instant tokenExpiry = Instant.MIN; // guarded by this
  private int tokensIssued; // guarded by this

  public AirflowClient(Config config) {
    this(config, Clock.systemUTC());
  }

  AirflowClient(Config config, Clock clock) {
    this.config = requireNonNull(config, "config is null");
    this.clock = requireNonNull(clock, "clock is null");
    // HTTP/1.1: Java's default HTTP/2 tries a cleartext upgrade (h2c), which Airflow's uvicorn rejects (400/500).
    this.http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(CONNECT_TIMEOUT)
        .followRedirects(HttpClient.Redirect.NEVER).build();
  }

  public Config config() {
    return config;
  }

  /** How many tokens this client has obtained so far (1 plus its renewals). */
  public synchronized int tokensIssued() {
    return tokensIssued;
  }

  /**
   * Triggers a run of {@code dagId} now, with {@code conf} (the run's {@code dag_run.conf}).
   *
   * @param runId the run's id; empty lets Airflow choose one ({@code manual__…})
   * @throws AirflowException NOT_FOUND for an unknown DAG (after {@link Config#notFoundGrace()}), CONFLICT if the
   *     run id exists, INVALID if Airflow rejects the conf, or any reason of {@link #send}
   */
  public DagRun trigger(String dagId, Optional<String> runId, Map<String, ?> conf) {
    ObjectNode body = JSON.createObjectNode();
    body.putNull("logical_date"); // Airflow 3 requires the key; null means "now", and no data interval
    runId.ifPresent(id -> body.put("dag_run_id", id));
    body.set("conf", JSON.valueToTree(conf));
    String what = "trigger DAG '" + dagId + "'" + runId.map(id -> " as run '" + id + "'").orElse("");
    JsonNode r = withNotFoundGrace(what, () -> send("POST", dagPath(dagId) + "/dagRuns", body, what));
    return dagRun(r);
  }

  /** The run's current state. */
  public DagRun dagRun(String dagId, String runId) {
    return dagRun(dagId, runId, patience());
  }

  DagRun dagRun(String dagId, String runId, Patience patience) {
    String what = "get run '" + runId + "' of DAG '" + dagId + "'";
    return dagRun(send("GET", dagPath(dagId) + "/dagRuns/" + enc(runId), null, what, patience));
  }

  /** The run's task instances (every try's latest), ordered by task id. */
  public List<TaskInstance> taskInstances(String dagId, String runId) {
    return taskInstances(dagId, runId, patience());
  }

  List<TaskInstance> taskInstances(String dagId, String runId, Patience patience) {
    String what = "list the tasks of run '" + runId + "' of DAG '" + dagId + "'";
    JsonNode r = send("GET", dagPath(dagId) + "/dagRuns/" + enc(runId) + "/taskInstances?limit=1000", null, what,
        patience);
    List<TaskInstance> out = new ArrayList<>();
    for (JsonNode t : r.path("task_instances")) {
      if (t.path("map_index").asInt(-1) > 0) {
        continue; // mapped tasks: one line per task is enough for progress
      }
      out.add(new TaskInstance(t.path("task_id").asText(), text(t, "state"), t.path("try_number").asInt()));
    }
    out.sort(java.util.Comparator.comparing(TaskInstance::taskId));
    return out;
  }

  /**
   * Polls the run until it reaches a final state or {@code timeout} passes, reporting each change of its tasks'
   * states to {@code progress} as one line ({@code "dag D run R: running — 2 success, 1 running (fit) — 35s"}).
   *
   * @return the run in its final state (which may be {@link DagRunState#FAILED}: see {@link #requireSuccess})
   * @throws AirflowException TIMEOUT if the run is still going when {@code timeout} has passed
   */
  public DagRun await(String dagId, String runId, Duration timeout, Consumer<String> progress) {
    return await(dagId, runId, timeout, progress, outage -> { });
  }

  /**
   * {@link #await(String, String, Duration, Consumer)}, riding out outages: while Airflow does not answer (unreachable,
   * or 5xx after each request's retries) the wait polls on for up to {@link Config#outageGrace()}, saying so to
   * {@code progress}, and reports each outage to {@code outages} when it ends — or when the wait gives up on it, with
   * an UNREACHABLE (or SERVER_ERROR) error naming Airflow's URL and how long it had not answered.
   */
  public DagRun await(String dagId, String runId, Duration timeout, Consumer<String> progress,
      Consumer<Outage> outages) {
    return new RunWait(this, clock, dagId, runId, progress, outages).await(timeout);
  }

  /** "7s", "7.5s": whole seconds unless there is a fraction worth saying. */
  static String seconds(Duration d) {
    long ms = d.toMillis();
    return ms % 1000 == 0 || ms >= 10_000 ? (ms + 500) / 1000 + "s"
        : String.format(java.util.Locale.ROOT, "%.1fs", ms / 1000.0);
  }

  /**
   * {@code run} if it succeeded; else a RUN_FAILED error naming the failed tasks.
   */
  public DagRun requireSuccess(DagRun run) {
    if (run.state() == DagRunState.SUCCESS) {
      return run;
    }
    List<String> failed = taskInstances(run.dagId(), run.runId()).stream()
        .filter(t -> t.state().filter(s -> s.equals("failed") || s.equals("upstream_failed")).isPresent())
        .map(t -> t.taskId() + " " + t.stateName())
        .toList();
    throw new AirflowException(Reason.RUN_FAILED, 0, "Run '" + run.runId() + "' of DAG '" + run.dagId() + "' "
        + run.state().apiName() + (failed.isEmpty() ? "" : ": " + String.join(", ", failed))
        + " (see the task logs in Airflow)");
  }

  /** Unpauses {@code dagId} so its runs are scheduled. */
  public void unpause(String dagId) {
    String what = "unpause DAG '" + dagId + "'";
    ObjectNode body = JSON.createObjectNode().put("is_paused", false);
    withNotFoundGrace(what, () -> send("PATCH", dagPath(dagId) + "?update_mask=is_paused", body, what));
  }

  /** Whether {@code dagId} is paused. */
  public boolean isPaused(String dagId) {
    String what = "get DAG '" + dagId + "'";
    return withNotFoundGrace(what, () -> send("GET", dagPath(dagId), null, what)).path("is_paused").asBoolean();
  }

  /**
   * Records an event of the asset with URI {@code uri} (as if a task had updated it), so DAGs scheduled on it run.
   *
   * @return the event's id
   * @throws AirflowException NOT_FOUND if no DAG declares that asset
   */
  public long createAssetEvent(String uri, Map<String, ?> extra) {
    long assetId = assetId(uri);
    String what = "create an event of asset '" + uri + "'";
    ObjectNode body = JSON.createObjectNode().put("asset_id", assetId);
    body.set("extra", JSON.valueToTree(extra));
    return send("POST", "/api/v2/assets/events", body, what).path("id").asLong();
  }

  /** The id Airflow gave the asset with URI {@code uri}. */
  public long assetId(String uri) {
    String what = "look up asset '" + uri + "'";
    JsonNode r = send("GET", "/api/v2/assets?limit=100&uri_pattern=" + enc(uri), null, what);
    for (JsonNode a : r.path("assets")) {
      if (uri.equals(a.path("uri").asText())) {
        return a.path("id").asLong();
      }
    }
    throw new AirflowException(Reason.NOT_FOUND, 404,
        "Cannot " + what + ": Airflow knows no asset with that URI (no parsed DAG declares it)");
  }

  /** The runs of {@code dagId}, newest first (up to 100). */
  public List<DagRun> dagRuns(String dagId) {
    String what = "list runs of DAG '" + dagId + "'";
    JsonNode r = send("GET", dagPath(dagId) + "/dagRuns?limit=100&order_by=-run_after", null, what);
    List<DagRun> out = new ArrayList<>();
    for (JsonNode run : r.path("dag_runs")) {
      out.add(dagRun(run));
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------------

  static String summary(DagRun run, List<TaskInstance> tasks) {
    Map<String, List<String>> byState = new TreeMap<>();
    for (TaskInstance t : tasks) {
      byState.computeIfAbsent(t.stateName(), k -> new ArrayList<>()).add(t.taskId());
    }
    StringBuilder s = new StringBuilder("dag " + run.dagId() + " run " + run.runId() + ": " + run.state().apiName());
    if (!byState.isEmpty()) {
      s.append(" —");
      String sep = " ";
      for (Map.Entry<String, List<String>> e : byState.entrySet()) {
        s.append(sep).append(e.getValue().size()).append(' ').append(e.getKey());
        if (!e.getKey().equals("success") && !e.getKey().equals("none") && !e.getKey().equals("skipped")) {
          s.append(" (").append(String.join(", ", e.getValue())).append(')');
        }
        sep = ", ";
      }
    }
    return s.toString();
  }

  private interface Call {
    JsonNode call();
  }

  private JsonNode withNotFoundGrace(String what, Call call) {
    Instant deadline = clock.instant().plus(config.notFoundGrace());
    while (true) {
      try {
        return call.call();
      } catch (AirflowException e) {
        if (e.reason() != Reason.NOT_FOUND || !clock.instant().isBefore(deadline)) {
          if (e.reason() == Reason.NOT_FOUND && !config.notFoundGrace().isZero()) {
            throw new AirflowException(Reason.NOT_FOUND, 404, e.getMessage() + " (still after "
                + config.notFoundGrace().toSeconds() + "s: is the file in Airflow's DAGs folder, and free of import "
                + "errors? `airflow dags list-import-errors` tells)");
          }
          throw e;
        }
        sleep(config.poll());
      }
    }
  }

  private static DagRun dagRun(JsonNode r) {
    Map<String, Object> conf = new LinkedHashMap<>();
    if (r.path("conf").isObject()) {
      conf = JSON.convertValue(r.path("conf"), JSON.getTypeFactory().constructMapType(LinkedHashMap.class,
          String.class, Object.class));
    }
    return new DagRun(r.path("dag_id").asText(), r.path("dag_run_id").asText(),
        DagRunState.of(r.path("state").asText(null)), text(r, "start_date"), text(r, "end_date"), conf);
  }

  private static Optional<String> text(JsonNode n, String field) {
    JsonNode v = n.path(field);
    return v.isMissingNode() || v.isNull() ? Optional.empty() : Optional.of(v.asText());
  }

  private static String dagPath(String dagId) {
    return "/api/v2/dags/" + enc(dagId);
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
  }

  /**
   * Sends one API request with a valid token (renewed once if Airflow answers 401 to it) and returns the parsed
   * answer ({@code null} node for an empty body). A transient server error (HTTP 500, 502, 503, 504 — e.g. Airflow's
   * "Database error" when its metadata database is locked, as SQLite is under concurrent writers) is retried up to
   * {@value #TRANSIENT_ATTEMPTS} times in all, 1 s and then 2 s apart; the last answer counts.
   */
  JsonNode send(String method, String path, JsonNode body, String what) {
    return send(method, path, body, what, patience());
  }

  /** {@link #send(String, String, JsonNode, String)} within {@code patience}: no retry once it is spent. */
  private JsonNode send(String method, String path, JsonNode body, String what, Patience patience) {
    HttpResponse<String> r;
    for (int attempt = 1; ; attempt++) {
      r = exchange(method, path, body, bearer(false, patience), what, patience);
      if (r.statusCode() == 401) {
        // expired or revoked: one fresh token
        r = exchange(method, path, body, bearer(true, patience), what, patience);
      }
      if (!isTransient(r.statusCode()) || attempt >= TRANSIENT_ATTEMPTS || patience.spent(clock.instant())) {
        break;
      }
      LOG.info("Airflow answered HTTP {} to '{}' (attempt {} of {}); retrying", r.statusCode(), what, attempt,
          TRANSIENT_ATTEMPTS);
      sleep(Duration.ofSeconds(attempt));
    }
    return parse(r, what);
  }

  static final int TRANSIENT_ATTEMPTS = 3;

  static boolean isTransient(int status) {
    return status == 500 || status == 502 || status == 503 || status == 504;
  }

  /** The default patience: {@link Config#requestTimeout()} for each request. */
  private Patience patience() {
    return new Patience(config.requestTimeout(), Instant.MAX);
  }

  private String bearer(boolean renew, Patience patience) {
    synchronized (this) {
      if (renew || token == null || !clock.instant().isBefore(tokenExpiry.minus(TOKEN_MARGIN))) {
        fetchToken(patience);
      }
      return "Bearer " + token;
    }
  }

  private void fetchToken(Patience patience) {
    ObjectNode body = JSON.createObjectNode()
        .put("username", config.credentials().username())
        .put("password", config.credentials().password());
    String what = "log in to Airflow at " + config.baseUrl() + " as '" + config.credentials().username() + "'";
    HttpResponse<String> r = exchange("POST", "/auth/token", body, null, what, patience);
    if (r.statusCode() == 401 || r.statusCode() == 403) {
      // Never echo the answer's body here beyond Airflow's short detail: validation errors may quote the input.
      throw new AirflowException(AirflowException.reasonOf(r.statusCode()), r.statusCode(), "Cannot " + what + ": "
          + (r.statusCode() == 401 ? "wrong username or password" : "forbidden") + " (HTTP " + r.statusCode() + ")");
    }
    JsonNode n = parse(r, what);
    String t = n.path("access_token").asText(null);
    if (t == null || t.isEmpty()) {
      throw new AirflowException(Reason.SERVER_ERROR, r.statusCode(),
          "Cannot " + what + ": the answer has no access_token (is " + config.baseUrl() + " an Airflow 3 API server?)");
    }
    token = t;
    tokenExpiry = expiryOf(t).orElse(clock.instant().plus(Duration.ofMinutes(5)));
    tokensIssued++;
  }

  /** The {@code exp} claim of a JWT (seconds since the epoch), if it has one; the signature is not checked. */
  static Optional<Instant> expiryOf(String jwt) {
    String[] parts = jwt.split("\\.");
    if (parts.length < 2) {
      return Optional.empty();
    }
    try {
      JsonNode claims = JSON.readTree(Base64.getUrlDecoder().decode(parts[1]));
      return claims.path("exp").isNumber() ? Optional.of(Instant.ofEpochSecond(claims.path("exp").asLong()))
          : Optional.empty();
    } catch (IOException | IllegalArgumentException e) {
      return Optional.empty();
    }
  }

  /**
   * One HTTP exchange, bounded as a whole by the patience's next timeout: connecting, sending and reading the whole
   * answer. The request's own timeout stops waiting for the answer's headers only, so the answer is awaited through a
   * future that is cancelled (closing the connection) when the time is up: a peer that went silent mid-answer cannot
   * hold the caller until TCP gives up.
   */
  private HttpResponse<String> exchange(String method, String path, JsonNode body, String authorization,
      String what, Patience patience) {
    Duration timeout = patience.next(clock.instant());
    HttpRequest.Builder b = HttpRequest.newBuilder(config.baseUrl().resolve(path))
        .timeout(timeout)
        .header("Accept", "application/json");
    if (authorization != null) {
      b.header("Authorization", authorization);
    }
    if (body != null) {
      try {
        b.header("Content-Type", "application/json")
            .method(method, HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body)));
      } catch (JsonProcessingException e) {
        throw new AirflowException(Reason.INVALID, 0, "Cannot " + what + ": the request cannot be written as JSON: "
            + config.credentials().scrub(e.getOriginalMessage()));
      }
    } else {
      b.method(method, HttpRequest.BodyPublishers.noBody());
    }
    CompletableFuture<HttpResponse<String>> answer = http.sendAsync(b.build(), HttpResponse.BodyHandlers.ofString());
    try {
      return answer.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      answer.cancel(true);
      throw unreachable(what, "no answer within " + seconds(timeout));
    } catch (ExecutionException e) {
      throw unreachable(what, cause(e.getCause(), timeout));
    } catch (InterruptedException e) {
      answer.cancel(true);
      Thread.currentThread().interrupt();
      throw new AirflowException(Reason.UNREACHABLE, "Cannot " + what + ": interrupted", null);
    }
  }

  private AirflowException unreachable(String what, String cause) {
    return new AirflowException(Reason.UNREACHABLE, "Cannot " + what + ": Airflow at " + config.baseUrl()
        + " is unreachable (" + config.credentials().scrub(cause) + ")", null);
  }

  /** Why an exchange failed, in a few words: which timeout ran out, or the I/O error's own message. */
  private static String cause(Throwable t, Duration timeout) {
    if (t instanceof HttpConnectTimeoutException) {
      return "cannot connect within " + seconds(CONNECT_TIMEOUT);
    }
    if (t instanceof HttpTimeoutException) {
      return "no answer within " + seconds(timeout);
    }
    // The first error in the chain that says something ("Connection refused", "No route to host"), else its kind.
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c.getMessage() != null && !c.getMessage().isBlank()) {
        return c.getMessage();
      }
    }
    return t.getClass().getSimpleName();
  }

  private JsonNode parse(HttpResponse<String> r, String what) {
    int status = r.statusCode();
    if (status >= 200 && status < 300) {
      if (r.body() == null || r.body().isBlank()) {
        return JSON.nullNode();
      }
      try {
        return JSON.readTree(r.body());
      } catch (IOException e) {
        throw new AirflowException(Reason.SERVER_ERROR, status, "Cannot " + what + ": Airflow's answer is not JSON "
            + "(is " + config.baseUrl() + " an Airflow 3 API server?)");
      }
    }
    Reason reason = AirflowException.reasonOf(status);
    String detail = config.credentials().scrub(detail(r.body()));
    String meaning = switch (reason) {
      case UNAUTHORIZED -> "not authenticated";
      case FORBIDDEN -> "forbidden for user '" + config.credentials().username() + "'";
      case NOT_FOUND -> "not found";
      case CONFLICT -> "conflict";
      case INVALID -> "rejected as invalid";
      default -> "Airflow failed";
    };
    throw new AirflowException(reason, status, "Cannot " + what + ": " + meaning + " (HTTP " + status
        + (detail.isEmpty() ? "" : ": " + detail) + ")");
  }

  /** Airflow's error detail, on one line: a string, or the messages of a validation error's list. */
  private static String detail(String body) {
    if (body == null || body.isBlank()) {
      return "";
    }
    try {
      JsonNode d = JSON.readTree(body).path("detail");
      if (d.isTextual()) {
        return oneLine(d.asText());
      }
      if (d.isArray()) {
        List<String> msgs = new ArrayList<>();
        for (JsonNode e : d) {
          String loc = e.path("loc").isArray() ? String.join(".", JSON.convertValue(e.path("loc"), String[].class))
              : "";
          msgs.add((loc.isEmpty() ? "" : loc + ": ") + e.path("msg").asText());
        }
        return oneLine(String.join("; ", msgs));
      }
      if (d.isObject()) {
        return oneLine(d.path("reason").asText(d.path("message").asText(d.toString())));
      }
      return "";
    } catch (IOException e) {
      return oneLine(body.length() > 200 ? body.substring(0, 200) + "…" : body);
    }
  }

  private static String oneLine(String s) {
    return s.replaceAll("\\s+", " ").strip();
  }

  static void sleep(Duration d) {
    try {
      Thread.sleep(d.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AirflowException(Reason.UNREACHABLE, "Cannot wait for Airflow: interrupted", null);
    }
  }
}
