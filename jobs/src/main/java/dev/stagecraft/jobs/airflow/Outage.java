package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A stretch of time during {@link AirflowClient#await} in which Airflow did not answer its polls (unreachable, or 5xx
 * after each request's own retries).
 *
 * @param since when the first unanswered poll started
 * @param length how long it lasted: until the poll that was answered again, or until the wait gave up
 * @param lastError the last failed request's message (never a password or token)
 * @param riddenOut true if Airflow answered again within the grace and the wait went on
 */
public record Outage(Instant since, Duration length, String lastError, boolean riddenOut) {
  public Outage {
    requireNonNull(since, "since is null");
    requireNonNull(length, "length is null");
    requireNonNull(lastError, "lastError is null");
  }

  /** As a ledger detail: {@code since} (ISO-8601), {@code seconds}, {@code ridden_out}, {@code last_error}. */
  public Map<String, Object> toDetail() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("since", since.toString());
    m.put("seconds", length.toMillis() / 1000.0);
    m.put("ridden_out", riddenOut);
    m.put("last_error", lastError);
    return m;
  }
}
