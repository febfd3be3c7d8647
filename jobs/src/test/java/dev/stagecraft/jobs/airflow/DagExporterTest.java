package dev.stagecraft.jobs.airflow;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.jobs.kinds.LoadStep;
import dev.stagecraft.jobs.kinds.SqlStep;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class DagExporterTest {
  private final StepKinds kinds = StepKinds.of(new LoadStep(), new SqlStep());

  private WorkflowSpec spec() {
    return new WorkflowLoader(kinds).parse("wf.yaml", """
        name: people
        steps:
          - { id: people, kind: load, path: people.csv }
          - { id: cities, kind: load, path: cities.csv }
          - { id: joined, kind: sql, sql: "SELECT * FROM people p JOIN cities c ON p.id = c.id" }
          - { id: report, kind: sql, after: [joined], sql: "SELECT 1 AS one" }
        """, "file:/flows");
  }

  private DagExporter.Options options() {
    return new DagExporter.Options("stagecraft_people", "/flows/wf.yaml", "/opt/stagecraft.jar", "file:/ws",
        "spark_default", Map.of("spark.executor.memory", "2g"), Optional.empty(),
        new TaskSettings(2, Duration.ofSeconds(30), Duration.ofMinutes(45)));
  }

  @Test
  void writesOneSparkSubmitTaskPerStepWithTheWorkflowsDependenciesAndOutputsAsAssets() {
    String py = new DagExporter(kinds).export(spec(), options());
    assertThat(py).contains("from airflow.sdk import DAG, Asset")
        .contains("from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator")
        .contains("dag_id=\"stagecraft_people\"")
        .contains("schedule=None")
        .contains("\"jar\": \"/opt/stagecraft.jar\"")
        .contains("\"workflow\": \"/flows/wf.yaml\"")
        .contains("\"workspace\": \"file:/ws\"")
        .contains("\"spark.executor.memory\": \"2g\"")
        .contains("application=\"{{ params.jar }}\"")
        .contains("java_class=\"dev.stagecraft.jobs.Main\"")
        .contains("\"{{ run_id | replace(':', '-') | replace('~', '-') }}\"")
        .contains("retries=2,").contains("retry_delay=datetime.timedelta(seconds=30)")
        .contains("execution_timeout=datetime.timedelta(seconds=2700)")
        .contains("outlets=[Asset(\"stagecraft://people/joined/output\")]");
    assertThat(py.lines().filter(l -> l.contains("= SparkSubmitOperator(")).map(String::strip).toList())
        .containsExactly("t_people = SparkSubmitOperator(", "t_cities = SparkSubmitOperator(",
            "t_joined = SparkSubmitOperator(", "t_report = SparkSubmitOperator(");
    assertThat(py.lines().filter(l -> l.contains(" >> ")).map(String::strip).toList())
        .containsExactlyInAnyOrder("t_people >> t_joined", "t_cities >> t_joined", "t_joined >> t_report");
  }

  @Test
  void quotesEveryValueAsAPythonStringLiteral() {
    assertThat(DagExporter.str("a\"b\\c\nd\u0001")).isEqualTo("\"a\\\"b\\\\c\\nd\\x01\"");
    DagExporter.Options o = new DagExporter.Options("d", "/x/it's \"here\".yaml", "/j.jar", "file:/ws", "c",
        Map.of(), Optional.of("@daily"), TaskSettings.DEFAULTS);
    String py = new DagExporter(kinds).export(spec(), o);
    assertThat(py).contains("\"workflow\": \"/x/it's \\\"here\\\".yaml\"").contains("schedule=\"@daily\"");
  }

  @Test
  void refusesSecretLikeSparkSettingsWithoutRepeatingTheirValue() {
    for (String key : List.of("spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.access.key",
        "spark.hadoop.fs.s3a.bucket.data.session.key", "spark.authenticate.secret", "spark.ssl.keyStorePassword",
        "spark.kubernetes.authenticate.oauthToken", "spark.hadoop.fs.s3a.server-side-encryption.key")) {
      assertThatThrownBy(() -> new DagExporter.Options("d", "/w.yaml", "/j.jar", "file:/ws", "c",
          Map.of(key, "hunter2"), Optional.empty(), TaskSettings.DEFAULTS))
          .as(key)
          .isInstanceOf(StagecraftException.class)
          .hasMessageStartingWith("Refusing --conf " + key + ": it looks like a secret")
          .hasMessageNotContaining("hunter2");
    }
    // Settings that only say where credentials come from are fine.
    for (String key : List.of("spark.hadoop.fs.s3a.aws.credentials.provider",
        "spark.hadoop.hadoop.security.credential.provider.path", "spark.hadoop.fs.s3a.endpoint",
        "spark.kubernetes.authenticate.submission.oauthTokenFile", "spark.executor.memory")) {
      assertThat(new DagExporter.Options("d", "/w.yaml", "/j.jar", "file:/ws", "c", Map.of(key, "v"),
          Optional.empty(), TaskSettings.DEFAULTS).sparkConf()).as(key).containsKey(key);
    }
  }

  @Test
  void rejectsDagIdsAirflowRefuses() {
    assertThatThrownBy(() -> new DagExporter.Options("my dag", "/w.yaml", "/j.jar", "file:/ws", "c", Map.of(),
        Optional.empty(), TaskSettings.DEFAULTS))
        .isInstanceOf(StagecraftException.class)
        .hasMessage("Invalid DAG id 'my dag' (expected 1-250 letters, digits, '_', '.' or '-')");
    assertThat(DagExporter.defaultDagId("churn model v2")).isEqualTo("stagecraft_churn_model_v2");
  }

  @Test
  void taskSettingsTakeTheStepsOwnTimeoutPlusStartupMargin() {
    StepConfig plain = new StepConfig("wf.yaml", "a", "sql", List.of(), Optional.empty(), Map.of("sql", "SELECT 1"));
    StepConfig timed = plain.withFields(Map.of("timeout_seconds", 600));
    assertThat(TaskSettings.forStep(plain, TaskSettings.DEFAULTS)).isEqualTo(TaskSettings.DEFAULTS);
    assertThat(TaskSettings.forStep(timed, TaskSettings.DEFAULTS).executionTimeout())
        .isEqualTo(Duration.ofMinutes(20));
    assertThatThrownBy(() -> new TaskSettings(-1, Duration.ZERO, Duration.ofMinutes(1)))
        .isInstanceOf(StagecraftException.class)
        .matches(e -> ((StagecraftException) e).category() == ErrorCategory.USER)
        .hasMessage("Invalid retries: -1 (expected 0 or more)");
  }
}
