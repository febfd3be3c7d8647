package dev.stagecraft.jobs.kinds;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import org.junit.jupiter.api.Test;

class AirflowStepTest {
  private final WorkflowLoader loader = new WorkflowLoader(StepKinds.of(new SqlStep(), new AirflowStep()));

  @Test
  void acceptsATriggerWithConfAndWait() {
    WorkflowSpec spec = loader.parse("wf.yaml", """
        name: w
        steps:
          - { id: a, kind: sql, sql: "SELECT 1 AS x" }
          - { id: go, kind: airflow, action: trigger, dag: downstream, conf: { table: "${steps.a.output}" },
              wait: true, timeout_seconds: 60 }
        """, "file:/flows");
    assertThat(spec.upstream().get("go")).containsExactly("a");
    assertThat(spec.step("go").fields().get("conf")).isInstanceOf(java.util.Map.class);
  }

  @Test
  void rejectsUnknownActionsAndAConfThatIsNotAMap() {
    assertThatThrownBy(() -> loader.parse("wf.yaml", """
        name: w
        steps:
          - { id: go, kind: airflow, action: poke, dag: d }
        """, "file:/flows"))
        .hasMessageContaining("wf.yaml: step 'go' field 'action': 'poke' is not supported (expected trigger)");
    assertThatThrownBy(() -> loader.parse("wf.yaml", """
        name: w
        steps:
          - { id: go, kind: airflow, action: trigger, dag: d, conf: [1, 2] }
        """, "file:/flows"))
        .hasMessageContaining("wf.yaml: step 'go' field 'conf': is a list (expected a map)");
  }

  @Test
  void takesAnOutageGraceOfMoreThanZeroSeconds() {
    WorkflowSpec spec = loader.parse("wf.yaml", """
        name: w
        steps:
          - { id: go, kind: airflow, action: trigger, dag: d, wait: true, outage_grace_seconds: 30 }
        """, "file:/flows");
    assertThat(spec.step("go").fields()).containsEntry("outage_grace_seconds", 30);
    assertThatThrownBy(() -> loader.parse("wf.yaml", """
        name: w
        steps:
          - { id: go, kind: airflow, action: trigger, dag: d, outage_grace_seconds: 0 }
        """, "file:/flows"))
        .hasMessageContaining("wf.yaml: step 'go' field 'outage_grace_seconds': must be more than 0");
  }
}
