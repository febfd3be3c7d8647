package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Writes a workflow as an Airflow 3 DAG file: one {@code SparkSubmitOperator} task per step running
 * {@code stagecraft step WORKFLOW STEP --run-id RUN}, dependencies mirroring the workflow's, every step's outputs
 * declared as {@code Asset}s (outlets) so downstream DAGs can be scheduled on them.
 *
 * <p>The jar, the workflow file and the workspace are DAG {@code params} (templated into each task), so a trigger's
 * {@code conf} may override them per run. Airflow's run id becomes the Stagecraft run id with every character
 * Stagecraft does not allow in run ids (Airflow's ':' of timestamps, '~') replaced by '-': all tasks of one DAG run
 * share one Stagecraft run and its ledger.
 *
 * <p>The output only imports Airflow's Task SDK ({@code airflow.sdk}) and the Apache Spark provider.
 */
public final class DagExporter {
  /** Airflow's default Spark connection. */
  public static final String CONN_ID_DEFAULT = "spark_default";
  /** Asset URIs of exported outputs: {@code stagecraft://WORKFLOW/STEP/OUTPUT}. */
  public static final String ASSET_SCHEME = "stagecraft";

  private static final Pattern DAG_ID = Pattern.compile("[A-Za-z0-9_.-]{1,250}");

  /**
   * What to export.
   *
   * @param dagId the DAG's id
   * @param workflowFile the workflow file as the tasks will read it (an absolute path)
   * @param jar the shaded jar as the tasks will read it
   * @param workspace the workspace URI every task uses
   * @param connId the Airflow connection naming the Spark master
   * @param sparkConf Spark settings passed to every spark-submit ({@code --conf})
   * @param schedule a cron expression or preset ({@code @daily}); empty means triggered only
   * @param defaults retries and timeouts before per-step adjustments ({@link TaskSettings#forStep})
   */
  /**
   * Keys whose values are credentials: any with secret, password, token or credential in its name, and S3A's keys
   * ({@code fs.s3a.access.key}, {@code fs.s3a.secret.key}, {@code fs.s3a.bucket.B.session.key}, …) — but not those
   * that only name where credentials come from (a provider class, a keystore path, a token file).
   */
  private static final Pattern SECRET_KEY = Pattern.compile(
      "(?i)(?!.*(provider|\\.path|file)$)(.*(secret|password|passwd|token|credential).*|.*fs\\.s3a\\..*key)");

  /** True if a Spark or Hadoop setting named {@code key} holds a credential. */
  static boolean looksSecret(String key) {
    return SECRET_KEY.matcher(key).matches();
  }

  public record Options(
      String dagId,
      String workflowFile,
      String jar,
      String workspace,
      String connId,
      Map<String, String> sparkConf,
      Optional<String> schedule,
      TaskSettings defaults) {
    public Options {
      requireNonNull(dagId, "dagId is null");
      if (!DAG_ID.matcher(dagId).matches()) {
        throw StagecraftException.user(
            "Invalid DAG id '%s' (expected 1-250 letters, digits, '_', '.' or '-')", dagId);
      }
      requireNonNull(workflowFile, "workflowFile is null");
      requireNonNull(jar, "jar is null");
      requireNonNull(workspace, "workspace is null");
      requireNonNull(connId, "connId is null");
      sparkConf = Collections.unmodifiableMap(new LinkedHashMap<>(sparkConf));
      for (String key : sparkConf.keySet()) {
        if (looksSecret(key)) {
          // The value is never repeated: it would be in this message, in the DAG file and in every command line.
          throw StagecraftException.user("Refusing --conf %s: it looks like a secret, and its value would be written "
              + "into the DAG file (shown in Airflow's code view) and into every task's spark-submit command line "
              + "(shown by ps). Give it to the cluster instead: Hadoop credential providers or spark-defaults.conf "
              + "on the Spark side, or an Airflow connection, Variable or secrets backend on Airflow's.", key);
        }
      }
      requireNonNull(schedule, "schedule is null");
      requireNonNull(defaults, "defaults is null");
    }
  }

  private final StepKinds kinds;

  public DagExporter(StepKinds kinds) {
    this.kinds = requireNonNull(kinds, "kinds is null");
  }

  /** The default DAG id of a workflow: {@code stagecraft_NAME} with unsupported characters replaced by '_'. */
  public static String defaultDagId(String workflowName) {
    return "stagecraft_" + workflowName.replaceAll("[^A-Za-z0-9_.-]", "_");
  }

  /** The Asset URI of one output of one step. */
  public static String assetUri(String workflowName, String stepId, String output) {
    return ASSET_SCHEME + "://" + workflowName.replaceAll("[^A-Za-z0-9_.-]", "_") + "/" + stepId + "/" + output;
  }

  /** The DAG file's Python source. */
  public String export(WorkflowSpec spec, Options options) {
    StringBuilder py = new StringBuilder();
    py.append("# Airflow 3 DAG for the Stagecraft workflow '").append(spec.name().replace('\n', ' ')).append("'.\n")
        .append("# Generated by `stagecraft airflow export-dag` from ").append(options.workflowFile()
            .replace('\n', ' ')).append(";\n")
        .append("# export again rather than edit. Each task spark-submits one step of the workflow; all tasks of a\n")
        .append("# DAG run share one Stagecraft run (Airflow's run id, ':' and '~' replaced by '-') and its ledger.\n")
        .append("# Needs: the Apache Spark provider, `spark-submit` on the workers' PATH, the connection '")
        .append(options.connId().replace('\n', ' ')).append("'.\n")
        .append("import datetime\n\n")
        .append("from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator\n")
        .append("from airflow.sdk import DAG, Asset\n\n");

    py.append("SPARK_CONF = ").append(dict(options.sparkConf())).append("\n\n");
    py.append("with DAG(\n")
        .append("    dag_id=").append(str(options.dagId())).append(",\n")
        .append("    description=").append(str("Stagecraft workflow " + spec.name())).append(",\n")
        .append("    schedule=").append(options.schedule().map(DagExporter::str).orElse("None")).append(",\n")
        .append("    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),\n")
        .append("    catchup=False,\n")
        // Steps of one run share a ledger; two runs at once would only compete for the cluster.
        .append("    max_active_runs=1,\n")
        .append("    tags=[\"stagecraft\"],\n")
        .append("    params={\n")
        .append("        \"jar\": ").append(str(options.jar())).append(",\n")
        .append("        \"workflow\": ").append(str(options.workflowFile())).append(",\n")
        .append("        \"workspace\": ").append(str(options.workspace())).append(",\n")
        .append("    },\n")
        .append(") as dag:\n");

    Map<String, String> vars = new LinkedHashMap<>();
    for (StepConfig step : spec.steps()) {
      String var = "t_" + step.id();
      vars.put(step.id(), var);
      TaskSettings settings = TaskSettings.forStep(step, options.defaults());
      List<String> outputs = kinds.find(step.kind()).map(k -> k.outputs()).orElse(List.of());
      py.append("    ").append(var).append(" = SparkSubmitOperator(\n")
          .append("        task_id=").append(str(step.id())).append(",\n")
          .append("        conn_id=").append(str(options.connId())).append(",\n")
          .append("        application=\"{{ params.jar }}\",\n")
          .append("        java_class=").append(str(Settings.MAIN_CLASS)).append(",\n")
          .append("        name=").append(str("stagecraft-" + spec.name() + "-" + step.id())).append(",\n")
          .append("        conf=SPARK_CONF,\n")
          .append("        application_args=[\n")
          .append("            \"step\",\n")
          .append("            \"{{ params.workflow }}\",\n")
          .append("            ").append(str(step.id())).append(",\n")
          .append("            \"--run-id\",\n")
          .append("            \"{{ run_id | replace(':', '-') | replace('~', '-') }}\",\n")
          .append("            \"--workspace\",\n")
          .append("            \"{{ params.workspace }}\",\n")
          .append("        ],\n")
          .append("        env_vars={").append(str(Settings.PROGRESS_ENV)).append(": ")
          .append(str(Settings.PROGRESS_PLAIN)).append("},\n")
          .append("        retries=").append(settings.retries()).append(",\n")
          .append("        retry_delay=").append(timedelta(settings.retryDelay())).append(",\n")
          .append("        execution_timeout=").append(timedelta(settings.executionTimeout())).append(",\n")
          .append("        outlets=[");
      for (int i = 0; i < outputs.size(); i++) {
        String uri = assetUri(spec.name(), step.id(), outputs.get(i));
        py.append(i == 0 ? "" : ", ").append("Asset(").append(str(uri)).append(")");
      }
      py.append("],\n").append("    )\n");
    }
    py.append("\n");
    boolean any = false;
    for (StepConfig step : spec.steps()) {
      Set<String> up = spec.upstream().getOrDefault(step.id(), Set.of());
      for (String u : up) {
        py.append("    ").append(vars.get(u)).append(" >> ").append(vars.get(step.id())).append("\n");
        any = true;
      }
    }
    if (!any) {
      py.append("    # no dependencies between steps\n");
    }
    return py.toString();
  }

  /** A Python string literal (double-quoted; backslashes, quotes and control characters escaped). */
  static String str(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      switch (c) {
        case '\\' -> b.append("\\\\");
        case '"' -> b.append("\\\"");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20 || c == 0x7f) {
            b.append(String.format("\\x%02x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('"').toString();
  }

  private static String dict(Map<String, String> m) {
    if (m.isEmpty()) {
      return "{}";
    }
    StringBuilder b = new StringBuilder("{\n");
    m.forEach((k, v) -> b.append("    ").append(str(k)).append(": ").append(str(v)).append(",\n"));
    return b.append("}").toString();
  }

  private static String timedelta(Duration d) {
    return "datetime.timedelta(seconds=" + d.toSeconds() + ")";
  }
}
