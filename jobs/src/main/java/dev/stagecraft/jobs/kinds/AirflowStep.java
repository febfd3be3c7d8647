package dev.stagecraft.jobs.kinds;

import static dev.stagecraft.spi.FieldSpec.Type.ANY;
import static dev.stagecraft.spi.FieldSpec.Type.BOOLEAN;
import static dev.stagecraft.spi.FieldSpec.Type.INTEGER;
import static dev.stagecraft.spi.FieldSpec.Type.STRING;

import dev.stagecraft.jobs.airflow.AirflowClient;
import dev.stagecraft.jobs.airflow.AirflowCredentials;
import dev.stagecraft.jobs.airflow.AirflowException;
import dev.stagecraft.jobs.airflow.DagRun;
import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * {@code airflow}: hands off to a downstream Airflow DAG. {@code action: trigger} triggers a run of {@code dag} with
 * {@code conf}; with {@code wait: true} the step lasts until that run ends and fails unless it succeeded.
 *
 * <p>The DAG run's id is {@code run_id}, by default {@code stagecraft__RUN__STEP}: a retried or resumed step finds the
 * run it triggered before (Airflow answers 409) and waits for it instead of triggering a second one. Airflow's URL and
 * credentials come from the environment ({@code STAGECRAFT_AIRFLOW_URL}, {@code STAGECRAFT_AIRFLOW_USERNAME} and
 * {@code STAGECRAFT_AIRFLOW_PASSWORD}, or {@code STAGECRAFT_AIRFLOW_CREDENTIALS_FILE}), or {@code url} for the URL.
 * While the wait's polls go unanswered it polls on for {@code outage_grace_seconds}; each such outage is recorded in the
 * step's ledger details as {@code airflow_outages}.
 */
public final class AirflowStep implements StepKind {
  /** Default of {@code timeout_seconds}: how long {@code wait: true} waits. */
  public static final int TIMEOUT_SECONDS_DEFAULT = 3600;

  @Override
  public String name() {
    return "airflow";
  }

  @Override
  public List<FieldSpec> fields() {
    return List.of(
        FieldSpec.required("action", STRING, "trigger"),
        FieldSpec.required("dag", STRING, "the id of the DAG to trigger"),
        FieldSpec.optional("conf", ANY, "a map: the DAG run's conf"),
        FieldSpec.optional("wait", BOOLEAN, "true or false: wait for the DAG run to end"),
        FieldSpec.optional("run_id", STRING, "the DAG run's id (default stagecraft__RUN__STEP)"),
        FieldSpec.optional("timeout_seconds", INTEGER, "seconds to wait with wait: true"),
        FieldSpec.optional("outage_grace_seconds", INTEGER, "seconds a wait polls on while Airflow does not answer "
            + "(default " + AirflowClient.OUTAGE_GRACE_SECONDS_DEFAULT + ")"),
        FieldSpec.optional("url", STRING, "Airflow's base URL (default $" + AirflowClient.URL_ENV + ")"));
  }

  @Override
  public List<String> outputs() {
    return List.of();
  }

  @Override
  public void validate(StepConfig step) {
    String action = step.requireString("action");
    if (!action.equals("trigger")) {
      throw step.invalid("action", "'" + action + "' is not supported (expected trigger)");
    }
    Object conf = step.fields().get("conf");
    if (conf != null && !(conf instanceof Map)) {
      throw step.invalid("conf", "is a " + (conf instanceof List ? "list" : "value") + " (expected a map)");
    }
    if (step.intValue("timeout_seconds", TIMEOUT_SECONDS_DEFAULT) <= 0) {
      throw step.invalid("timeout_seconds", "must be more than 0");
    }
    if (step.intValue("outage_grace_seconds", (int) AirflowClient.OUTAGE_GRACE_SECONDS_DEFAULT) <= 0) {
      throw step.invalid("outage_grace_seconds", "must be more than 0");
    }
  }

  @Override
  public void run(StepContext ctx) {
    StepConfig step = ctx.step();
    String dag = step.requireString("dag");
    String runId = step.string("run_id").orElse("stagecraft__" + ctx.runId() + "__" + step.id());
    Map<String, Object> conf = new LinkedHashMap<>();
    if (step.fields().get("conf") instanceof Map<?, ?> m) {
      m.forEach((k, v) -> conf.put(String.valueOf(k), v));
    }
    boolean wait = step.string("wait").map(Boolean::parseBoolean).orElse(false);
    Map<String, String> env = System.getenv();
    String url = step.string("url").orElse(env.getOrDefault(AirflowClient.URL_ENV, AirflowClient.URL_DEFAULT));
    Duration outageGrace = Duration.ofSeconds(
        step.intValue("outage_grace_seconds", (int) AirflowClient.OUTAGE_GRACE_SECONDS_DEFAULT));
    AirflowClient client = new AirflowClient(AirflowClient.Config.of(url,
        AirflowCredentials.resolve(env, Optional.empty())).withOutageGrace(outageGrace));
    try {
      DagRun run = client.trigger(dag, Optional.of(runId), conf);
      ctx.progress("triggered run " + run.runId() + " of DAG " + dag);
    } catch (AirflowException e) {
      if (e.reason() != AirflowException.Reason.CONFLICT) {
        throw e;
      }
      // A retry of this step: the run exists already; do not trigger a second one.
      ctx.progress("run " + runId + " of DAG " + dag + " exists already (triggered by an earlier attempt)");
    }
    if (wait) {
      Duration timeout = Duration.ofSeconds(step.intValue("timeout_seconds", TIMEOUT_SECONDS_DEFAULT));
      // Every outage the wait rode out (or gave up on) goes to the ledger, which keeps details of failed attempts too.
      List<Map<String, Object>> outages = new ArrayList<>();
      client.requireSuccess(client.await(dag, runId, timeout, ctx::progress, outage -> {
        outages.add(outage.toDetail());
        ctx.detail("airflow_outages", List.copyOf(outages));
      }));
    }
  }
}
