package dev.stagecraft.jobs.spec;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.jobs.kinds.LoadStep;
import dev.stagecraft.jobs.kinds.SqlStep;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorkflowLoaderTest {
  /** A kind whose work runs in barrier stages, as {@code train}'s does. */
  static final class GangKind implements dev.stagecraft.spi.StepKind {
    @Override
    public String name() {
      return "gang";
    }

    @Override
    public List<dev.stagecraft.spi.FieldSpec> fields() {
      return List.of();
    }

    @Override
    public List<String> outputs() {
      return List.of();
    }

    @Override
    public boolean barrier() {
      return true;
    }

    @Override
    public void run(dev.stagecraft.spi.StepContext context) {}
  }

  private final WorkflowLoader loader = new WorkflowLoader(StepKinds.of(new LoadStep(), new SqlStep()));
  private final WorkflowLoader withGang =
      new WorkflowLoader(StepKinds.of(new LoadStep(), new SqlStep(), new GangKind()));

  private WorkflowSpec parse(String yaml) {
    return loader.parse("wf.yaml", yaml, "file:/flows");
  }

  private List<String> problems(String yaml) {
    try {
      parse(yaml);
    } catch (WorkflowLoader.WorkflowException e) {
      assertThat(e.category()).isEqualTo(ErrorCategory.USER);
      return e.problems();
    }
    throw new AssertionError("expected the workflow to be rejected");
  }

  @Test
  void readsAValidWorkflowWithDependenciesFromAfterReferencesAndSql() {
    WorkflowSpec spec = parse("""
        name: demo
        workspace: hdfs://nn:8020/ws
        params: { input: data/x.csv }
        steps:
          - id: raw
            kind: load
            path: ${input}
            format: csv
            options: { header: true }
          - id: other
            kind: load
            path: ${workflow_dir}/y.json
          - id: features
            kind: sql
            sql: SELECT * FROM raw r JOIN (SELECT * FROM other) o ON r.id = o.id
          - id: report
            kind: load
            after: [other]
            path: ${steps.features.output}
            format: parquet
        """);
    assertThat(spec.name()).isEqualTo("demo");
    assertThat(spec.workspace()).contains("hdfs://nn:8020/ws");
    assertThat(spec.params()).containsEntry("input", "data/x.csv");
    assertThat(spec.upstream().get("raw")).isEmpty();
    assertThat(spec.upstream().get("features")).containsExactlyInAnyOrder("raw", "other");
    assertThat(spec.upstream().get("report")).containsExactlyInAnyOrder("other", "features");
    assertThat(spec.order()).containsExactly("raw", "other", "features", "report");
    assertThat(spec.allUpstream("report")).containsExactlyInAnyOrder("raw", "other", "features");
    assertThat(spec.allDownstream("raw")).containsExactlyInAnyOrder("features", "report");
    assertThat(spec.step("raw").stringMap("options")).containsEntry("header", "true");
  }

  @Test
  void sqlTablesInCtesAndSubqueriesAreDependencies() {
    WorkflowSpec spec = parse("""
        name: demo
        steps:
          - { id: a, kind: load, path: a.csv }
          - { id: b, kind: load, path: b.csv }
          - id: c
            kind: sql
            sql: WITH x AS (SELECT * FROM a) SELECT * FROM x WHERE id IN (SELECT id FROM b)
        """);
    assertThat(spec.upstream().get("c")).containsExactlyInAnyOrder("a", "b");
  }

  @Test
  void unknownKind() {
    assertThat(problems("""
        name: w
        steps:
          - { id: a, kind: lod, path: x.csv }
        """)).containsExactly("wf.yaml: step 'a' field 'kind': unknown kind 'lod' (expected one of: load, sql)");
  }

  @Test
  void missingField() {
    assertThat(problems("""
        name: w
        steps:
          - { id: q, kind: sql }
        """)).containsExactly("wf.yaml: step 'q' field 'sql': is missing (expected a Spark SQL query)");
  }

  @Test
  void unknownField() {
    assertThat(problems("""
        name: w
        steps:
          - { id: q, kind: sql, sql: SELECT 1, sqll: x }
        """)).containsExactly(
            "wf.yaml: step 'q' field 'sqll': unknown field for kind 'sql' (expected one of: id, kind, after, policy, "
                + "deadline, budget, sizing, sql)");
  }

  @Test
  void wrongFieldType() {
    assertThat(problems("""
        name: w
        steps:
          - { id: a, kind: load, path: x.csv, options: [header] }
        """)).containsExactly(
            "wf.yaml: step 'a' field 'options': is a list (expected a map of Spark reader options, e.g. {header: true})");
  }

  @Test
  void duplicateId() {
    assertThat(problems("""
        name: w
        steps:
          - { id: a, kind: sql, sql: SELECT 1 }
          - { id: a, kind: sql, sql: SELECT 2 }
        """)).containsExactly("wf.yaml: step 'a' field 'id': duplicate id (expected each step id once)");
  }

  @Test
  void missingAndMalformedIds() {
    assertThat(problems("""
        name: w
        steps:
          - { kind: sql, sql: SELECT 1 }
          - { id: my-step, kind: sql, sql: SELECT 1 }
        """)).containsExactly(
            "wf.yaml: step #1 field 'id': is missing (expected a unique step id)",
            "wf.yaml: step 'my-step' field 'id': invalid id (expected letters, digits and '_', starting with a letter)");
  }

  @Test
  void referenceToUnknownStepInAfterAndInAReference() {
    assertThat(problems("""
        name: w
        steps:
          - { id: a, kind: sql, sql: SELECT 1 }
          - { id: b, kind: load, after: [zz], path: "${steps.nope.output}", format: parquet }
        """)).containsExactly(
            "wf.yaml: step 'b' field 'after': unknown step 'zz' (expected one of: a)",
            "wf.yaml: step 'b' field 'path': reference ${steps.nope.output} names unknown step 'nope' (expected one of: a, b)");
  }

  @Test
  void referenceToUnknownOutput() {
    assertThat(problems("""
        name: w
        steps:
          - { id: a, kind: sql, sql: SELECT 1 }
          - { id: b, kind: load, path: "${steps.a.model}", format: parquet }
        """)).containsExactly(
            "wf.yaml: step 'b' field 'path': reference ${steps.a.model} names unknown output 'model' of step 'a' "
                + "(expected one of: output)");
  }

  @Test
  void referenceToUnknownParam() {
    assertThat(problems("""
        name: w
        params: { input: x }
        steps:
          - { id: a, kind: sql, sql: "SELECT * FROM parquet.`${inptu}`" }
        """)).containsExactly(
            "wf.yaml: step 'a' field 'sql': unknown parameter ${inptu} (expected one of: input, run_id, workflow_dir, "
                + "workspace, or ${steps.ID.OUTPUT})");
  }

  @Test
  void dependencyCycleIsPrinted() {
    assertThat(problems("""
        name: w
        steps:
          - { id: a, kind: sql, sql: SELECT * FROM c }
          - { id: b, kind: sql, sql: SELECT * FROM a }
          - { id: c, kind: sql, after: [b], sql: SELECT 1 }
        """)).containsExactly("wf.yaml: dependency cycle: a -> b -> c -> a");
  }

  @Test
  void selfDependency() {
    assertThat(problems("""
        name: w
        steps:
          - { id: a, kind: sql, after: [a], sql: SELECT 1 }
        """)).containsExactly("wf.yaml: step 'a' field 'after': a step cannot run after itself");
  }

  @Test
  void topLevelProblemsAreAllReported() {
    assertThat(problems("""
        stepz: []
        params: { run_id: x }
        """)).containsExactly(
            "wf.yaml: field 'stepz': unknown field (expected one of: name, workspace, params, policies, deadline, "
                + "budget, sizing, steps)",
            "wf.yaml: field 'name': is missing (expected the workflow's name)",
            "wf.yaml: field 'params.run_id': 'run_id' is built in (expected another name)",
            "wf.yaml: field 'steps': is missing (expected a list of steps)");
  }

  @Test
  void badSqlAndBadSchemaAreCaughtBeforeRunning() {
    List<String> p = problems("""
        name: w
        steps:
          - { id: a, kind: sql, sql: SELEC 1 }
          - { id: b, kind: load, path: x.csv, schema: "id INTEGR" }
          - { id: c, kind: load, path: x.txt }
          - { id: d, kind: load, path: x.csv, format: xls }
        """);
    assertThat(p).hasSize(4);
    assertThat(p.get(0)).startsWith("wf.yaml: step 'a' field 'sql': cannot parse the query: ")
        .endsWith("(expected a Spark SQL query)");
    assertThat(p.get(1)).startsWith("wf.yaml: step 'b' field 'schema': cannot parse 'id INTEGR': ");
    assertThat(p.get(2)).isEqualTo("wf.yaml: step 'c' field 'format': is missing and the path 'x.txt' does not tell "
        + "(expected one of: csv, json, libsvm, parquet)");
    assertThat(p.get(3)).isEqualTo(
        "wf.yaml: step 'd' field 'format': unknown format 'xls' (expected one of: csv, json, libsvm, parquet)");
  }

  @Test
  void duplicateYamlKeysAndBadYamlAreRejected() {
    assertThatThrownBy(() -> parse("name: a\nname: b\nsteps: []\n"))
        .isInstanceOf(StagecraftException.class)
        .hasMessageStartingWith("wf.yaml: not valid YAML: Duplicate field 'name'");
    assertThatThrownBy(() -> parse("- just\n- a list\n"))
        .hasMessage("wf.yaml: expected a YAML map with 'name' and 'steps'");
  }

  @Test
  void loadsFromAFileAndResolvesItsFolder(@TempDir Path dir) throws Exception {
    Path f = dir.resolve("flow.yaml");
    Files.writeString(f, "name: f\nsteps:\n  - { id: a, kind: sql, sql: SELECT 1 AS x }\n");
    WorkflowSpec spec = loader.load(f);
    assertThat(spec.directory()).isEqualTo(dir.toUri().toString().replaceAll("/$", ""));
    assertThatThrownBy(() -> loader.load(dir.resolve("missing.yaml")))
        .hasMessage("Cannot read workflow " + dir.resolve("missing.yaml") + ": no such file");
  }

  @Test
  void templateSubstitutesAndEscapes() {
    assertThat(Template.references("a ${x} b $${y} ${ steps.s.output }")).containsExactly("x", "steps.s.output");
    assertThat(Template.substitute("a ${x} $${y}", n -> n.toUpperCase())).isEqualTo("a X ${y}");
    assertThat(Set.of(Template.stepOutput("steps.t.model"))).containsExactlyInAnyOrder("t", "model");
    assertThat(Template.stepOutput("input")).isNull();
  }

  @Test
  void policiesInlineAndBuiltIn() {
    WorkflowSpec spec = withGang.parse("wf.yaml", """
        name: p
        policies:
          small: { executor: { cores: 2, memory: 2g }, allocation: { mode: dynamic, max: 3 } }
        steps:
          - { id: a, kind: load, path: x.csv, policy: small }
          - { id: b, kind: gang, policy: gpu-training }
          - { id: c, kind: load, path: y.csv }
        """, "file:/flows");
    assertThat(spec.policies()).containsKeys("local", "cpu-etl", "gpu-training", "gpu-inference", "small");
    assertThat(spec.policyOf(spec.step("a")).orElseThrow().executor().memoryMib()).isEqualTo(2048);
    assertThat(spec.policyOf(spec.step("b")).orElseThrow().name()).isEqualTo("gpu-training");
    assertThat(spec.policyOf(spec.step("c"))).isEmpty();
  }

  @Test
  void aPolicySetsTheCollectivesFrameIntegrityAndABadModeNamesThePolicyAndField() {
    WorkflowSpec spec = withGang.parse("wf.yaml", """
        name: p
        policies:
          trusted: { allocation: { executors: 2 }, collectives: { integrity: none } }
        steps:
          - { id: b, kind: gang, policy: trusted }
        """, "file:/flows");
    assertThat(spec.policyOf(spec.step("b")).orElseThrow().collectives().integrity()).contains("none");
    assertThatThrownBy(() -> withGang.parse("wf.yaml", """
        name: p
        policies:
          shaky: { collectives: { integrity: checksum } }
        steps:
          - { id: b, kind: gang, policy: shaky }
        """, "file:/flows"))
        .isInstanceOfSatisfying(WorkflowLoader.WorkflowException.class, e -> assertThat(e.problems()).contains(
        "wf.yaml: policy 'shaky' field 'collectives.integrity': unknown mode 'checksum' (expected one of: mac, "
            + "encrypt, none)"));
  }

  @Test
  void policyProblemsAreReportedBeforeAnythingRuns() {
    assertThatThrownBy(() -> withGang.parse("wf.yaml", """
        name: p
        policies:
          shared: { executor: { gpus: 1, cores: 4 }, task: { gpus: 0.3 } }
          greedy: { executor: { gpus: 1 }, task: { gpus: 2 }, speed: fast }
        steps:
          - { id: a, kind: load, path: x.csv, policy: cpu-elt }
          - { id: t, kind: gang, policy: gpu-inference }
        """, "file:/flows"))
        .isInstanceOfSatisfying(WorkflowLoader.WorkflowException.class, e -> assertThat(e.problems()).containsExactly(
        "wf.yaml: policy 'shared' field 'task.gpus': 0.3 does not divide one GPU evenly (expected 1/n of a GPU, "
            + "e.g. 0.5, 0.25 or 0.125, or a whole number)",
        "wf.yaml: policy 'greedy' field 'speed': unknown field (expected one of: executor, task, allocation, market, "
            + "pool, priority, rapids, collectives)",
        "wf.yaml: policy 'greedy' field 'task.gpus': 2 is more than the executor's 1 GPU(s) (expected at most "
            + "executor.gpus)",
        "wf.yaml: step 'a' field 'policy': unknown policy 'cpu-elt' (expected one of: cpu-etl, gpu-inference, "
            + "gpu-training, local)",
        "wf.yaml: step 't' field 'policy': policy 'gpu-inference' uses dynamic allocation, which Spark refuses for "
            + "the barrier stages of a 'gang' step (SPARK-24942) (expected a policy with allocation mode static, "
            + "e.g. gpu-training)"));
  }

  @Test
  void policiesFromAFile(@TempDir Path dir) throws Exception {
    Files.writeString(dir.resolve("policies.yaml"), """
        policies:
          batch: { executor: { cores: 3 }, market: spot }
        """);
    Files.writeString(dir.resolve("wf.yaml"), """
        name: p
        policies: policies.yaml
        steps:
          - { id: a, kind: load, path: x.csv, policy: batch }
        """);
    WorkflowSpec spec = loader.load(dir.resolve("wf.yaml"));
    assertThat(spec.policies().get("batch").executor().cores()).isEqualTo(3);

    Files.writeString(dir.resolve("policies.yaml"), "batch: { executor: { cores: many } }\n");
    assertThatThrownBy(() -> loader.load(dir.resolve("wf.yaml")))
        .hasMessageContaining("policies.yaml: policy 'batch' field 'executor.cores': 'many' is not an integer");
    Files.delete(dir.resolve("policies.yaml"));
    assertThatThrownBy(() -> loader.load(dir.resolve("wf.yaml")))
        .hasMessageContaining("field 'policies': cannot read policy file policies.yaml: no such file");
  }

  @Test
  void deadlinesBudgetsAndSizing() {
    WorkflowSpec spec = parse("""
        name: w
        deadline: "06:30+01:00"
        budget: 2.5
        sizing: auto
        steps:
          - { id: a, kind: sql, sql: SELECT 1, deadline: 1h30m, budget: "0.25" }
          - { id: b, kind: sql, sql: SELECT 2, sizing: as_written }
        """);
    assertThat(spec.schedule().autoSizing()).isTrue();
    assertThat(spec.schedule().budget()).contains(2.5);
    java.time.Instant five = java.time.Instant.parse("2026-11-28T05:00:00Z");
    // 06:30 at +01:00 is 05:30 UTC: half an hour after 05:00 UTC
    assertThat(spec.schedule().deadline().orElseThrow().secondsFrom(five)).isEqualTo(1800.0);
    assertThat(spec.stepSchedule("a").deadline().orElseThrow().secondsFrom(five)).isEqualTo(5400.0);
    assertThat(spec.stepSchedule("a").budget()).contains(0.25);
    assertThat(spec.stepSchedule("a").orElse(spec.schedule()).autoSizing()).isTrue();
    assertThat(spec.stepSchedule("b").orElse(spec.schedule()).autoSizing()).isFalse();
    assertThat(spec.stepSchedule("b").orElse(spec.schedule()).budget()).contains(2.5);
  }

  @Test
  void badDeadlinesBudgetsAndSizingNameTheField() {
    assertThat(problems("""
        name: w
        deadline: soon
        sizing: automatic
        steps:
          - { id: a, kind: sql, sql: SELECT 1, deadline: "25:00", budget: -1 }
          - { id: b, kind: sql, sql: SELECT 2, budget: lots }
        """)).containsExactly(
            "wf.yaml: field 'deadline': 'soon' is not a deadline (expected a duration such as 90s, 45m, 2h or 1h30m, "
                + "or a time of day such as 06:00 (UTC) or 06:00+01:00)",
            "wf.yaml: field 'sizing': 'automatic' is not a sizing mode (expected auto or as_written)",
            "wf.yaml: step 'a' field 'deadline': '25:00' is not a deadline (expected a duration such as 90s, 45m, 2h "
                + "or 1h30m, or a time of day such as 06:00 (UTC) or 06:00+01:00)",
            "wf.yaml: step 'a' field 'budget': '-1' is not a positive amount (expected the most it may cost in the "
                + "price catalog's currency, e.g. 0.50)",
            "wf.yaml: step 'b' field 'budget': 'lots' is not a positive amount (expected the most it may cost in the "
                + "price catalog's currency, e.g. 0.50)");
  }
}
