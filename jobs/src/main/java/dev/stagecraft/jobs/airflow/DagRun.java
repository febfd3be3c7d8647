package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/** An Airflow DAG run as the REST API describes it (the fields Stagecraft uses). */
public record DagRun(String dagId, String runId, DagRunState state, Optional<String> startDate,
    Optional<String> endDate, Map<String, Object> conf) {
  public DagRun {
    requireNonNull(dagId, "dagId is null");
    requireNonNull(runId, "runId is null");
    requireNonNull(state, "state is null");
    requireNonNull(startDate, "startDate is null");
    requireNonNull(endDate, "endDate is null");
    conf = Collections.unmodifiableMap(new LinkedHashMap<>(conf));
  }
}
