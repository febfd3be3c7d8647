package dev.stagecraft.jobs.notebook;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.testing.Ledgers;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.testing.LocalSpark;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The notebook API on real local Spark (the test JVM's shared local[2] session) and, for launch, a child JVM. */
class SessionTest {
  @TempDir Path dir;
  final ByteArrayOutputStream printed = new ByteArrayOutputStream();
  Session session;

  @BeforeEach
  void start() throws Exception {
    Files.writeString(dir.resolve("people.csv"), "id,name,age\n1,ann,31\n2,<b>bob</b>,45\n3,cy,27\n");
    session = Session.builder().spark(LocalSpark.get()).workspace(dir.resolve("ws").toString())
        .progressTo(new PrintStream(printed, true, StandardCharsets.UTF_8)).start();
  }

  String printed() {
    return printed.toString(StandardCharsets.UTF_8);
  }

  Workflow people() {
    return people(session);
  }

  Workflow people(Session s) {
    return s.workflow("people")
        .param("csv", dir.resolve("people.csv"))
        .step("people", "load", Map.of("path", "${csv}", "options", Map.of("header", true, "inferSchema", true)))
        .step("older", "sql", Map.of("sql", "SELECT id, name, age FROM people WHERE age > 30 ORDER BY id",
            "policy", "cpu-etl"))
        .build();
  }

  @Test
  void aWorkflowBuiltInCodeRunsWithProgressAndGivesItsLedgerPreviewAndCostAsValues() throws Exception {
    Workflow wf = people();
    assertThat(wf.steps()).containsExactly("people", "older");
    assertThat(wf.toString()).contains("people (load) → older (sql, policy cpu-etl)");

    Run run = session.run(wf, "r1");
    assertThat(run.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(printed()).contains("workspace " + session.workspace()).contains("▶ people (load) started")
        .contains("✔ older succeeded").contains("Run r1 SUCCEEDED");

    Table ledger = run.table();
    assertThat(ledger.column("step")).containsExactly("people", "older");
    assertThat(ledger.column("status")).containsOnly("SUCCEEDED");
    assertThat(ledger.column("rows")).containsExactly(3L, 2L);
    assertThat(ledger.html()).contains("<th>step</th>").contains("<td>older</td>");

    Table preview = run.preview("older", 10);
    assertThat(preview.columns()).containsExactly("id", "name", "age");
    assertThat(preview.column("name")).containsExactly("ann", "<b>bob</b>");
    assertThat(preview.html()).contains("<td>&lt;b&gt;bob&lt;/b&gt;</td>").doesNotContain("<b>bob");
    assertThat(preview.toString().lines().toList()).containsExactly("id  name        age", "1   ann         31",
        "2   <b>bob</b>  45");

    CostReport cost = run.cost();
    assertThat(cost.steps()).containsKeys("people", "older");
    assertThat(cost.total().cost()).isPositive();
    double sum = cost.steps().values().stream().mapToDouble(CostReport.Line::cost).sum();
    assertThat(sum).isCloseTo(cost.total().cost(), within(1e-9));
    BufferedImage chart = run.costChart();
    assertThat(chart.getWidth()).isEqualTo(900);
    assertThat(chart.getHeight()).isEqualTo(480);

    Run again = session.run(wf, "r2");
    BufferedImage both = session.costChart("first", run, "second", again);
    assertThat(both.getHeight()).isEqualTo(480);
    assertThat(both.getWidth()).isGreaterThanOrEqualTo(900);
    assertThat(distinctColours(both)).as("four stacks (two runs × busy/idle) plus axes and text").isGreaterThan(4);

    assertThatThrownBy(() -> run.metric("older", "accuracy")).isInstanceOf(StagecraftException.class)
        .hasMessage("Cannot read metric 'accuracy' of step 'older' in run 'r1': the step is SUCCEEDED and recorded "
            + "no metrics");
    assertThatThrownBy(() -> run.step("nope")).hasMessage("Invalid step 'nope': run 'r1' has no such step (expected "
        + "one of: people, older)");
    assertThatThrownBy(() -> session.run(wf, "r1")).hasMessageStartingWith("Cannot start run 'r1': it already exists");
  }

  @Test
  void aFailedRunIsAValueAndResumesWithAChangedParameterOrOneStepAtATime() throws Exception {
    Workflow wf = session.parse("""
        name: extra
        params: { extra: %s }
        steps:
          - { id: people, kind: load, path: "%s", options: { header: true, inferSchema: true } }
          - { id: extra, kind: load, path: "${extra}", format: csv }
          - { id: joined, kind: sql, sql: "SELECT COUNT(*) AS n FROM people CROSS JOIN extra" }
        """.formatted(dir.resolve("missing.csv"), dir.resolve("people.csv")));

    Run failed = session.run(wf, "f1");
    assertThat(failed.status()).isEqualTo(RunStatus.FAILED);
    assertThat(failed.step("extra").status()).isEqualTo(StepStatus.FAILED);
    assertThat(failed.step("joined").status()).isEqualTo(StepStatus.SKIPPED);
    assertThat(failed.table().column("notes").get(1).toString()).contains("Path does not exist");
    assertThatThrownBy(failed::requireSucceeded).isInstanceOf(StagecraftException.class)
        .hasMessageStartingWith("Run 'f1' is FAILED (expected SUCCEEDED): step 'extra' failed: ");

    Files.writeString(dir.resolve("extra.csv"), "a\n1\n2\n");
    assertThatThrownBy(() -> wf.set("extr", "x")).hasMessage("Invalid parameter 'extr': workflow workflow (YAML text "
        + "in a notebook) has no such parameter (expected one of: extra)");
    Workflow fixed = wf.set("extra", dir.resolve("extra.csv").toString());
    Run step = session.runStep(fixed, "f1", "extra");
    assertThat(step.step("extra").status()).isEqualTo(StepStatus.SUCCEEDED);
    assertThat(step.step("extra").attempts()).isEqualTo(2);
    assertThat(step.step("joined").status()).isEqualTo(StepStatus.SKIPPED);

    Run resumed = session.resume(fixed, "f1");
    assertThat(resumed.requireSucceeded().status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(printed()).contains("1 step(s) to run, 2 already succeeded (people, extra)");
    // extra.csv has no header option: three rows (a, 1, 2) × three people.
    assertThat(resumed.output("joined").first().getLong(0)).isEqualTo(9L);
    assertThat(session.open("f1").status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThatThrownBy(() -> session.open("nope")).hasMessageStartingWith("Cannot open run 'nope': no ledger at ");
  }

  @Test
  void aTrainStepGivesItsLossCurveMetricsAndCheckpoints() throws Exception {
    StringBuilder csv = new StringBuilder("x,y,label\n");
    java.util.Random r = new java.util.Random(7);
    for (int i = 0; i < 400; i++) {
      double x = r.nextGaussian();
      double y = r.nextGaussian();
      csv.append(String.format(Locale.ROOT, "%.4f,%.4f,%d%n", x, y, x + y > 0 ? 1 : 0));
    }
    Files.writeString(dir.resolve("points.csv"), csv.toString());
    Workflow wf = session.workflow("points")
        .step("raw", "load", Map.of("path", dir.resolve("points.csv").toString(),
            "options", Map.of("header", true, "inferSchema", true)))
        .step("fit", "train", Map.of("input", "raw", "label", "label", "workers", 2,
            "model", Map.of("type", "logistic", "epochs", 4, "batch_size", 32, "lr", 0.05, "seed", 1),
            "checkpoint", Map.of("every_steps", 10, "keep", 2)))
        .build();
    Run run = session.run(wf, "t1").requireSucceeded();
    assertThat(run.metric("fit", "train_accuracy")).isGreaterThan(0.9);
    assertThat(run.resumedFromCheckpoint("fit")).isZero();
    // 400 rows / 32 per step = 13 steps per epoch, 52 in all: saved every 10 and at the end; the newest 2 kept.
    assertThat(run.checkpoints("fit")).containsExactly(50L, 52L);
    BufferedImage loss = run.lossCurve("fit");
    assertThat(loss.getWidth()).isEqualTo(800);
    assertThat(loss.getHeight()).isEqualTo(480);
    assertThat(distinctColours(loss)).isGreaterThan(2);
    assertThatThrownBy(() -> run.lossCurve("raw")).hasMessage("Cannot find output 'model' of step 'raw' in run 't1': "
        + "the step is SUCCEEDED and committed only: output");
  }

  @Test
  void policiesCanBeReplacedAndAreValidatedAgain() {
    Workflow wf = people();
    Workflow spot = wf.withPolicies(Map.of("cpu-etl", Map.of("executor", Map.of("cores", 2), "market", "spot")));
    assertThat(spot.spec().policies().get("cpu-etl").market().name()).isEqualTo("SPOT");
    assertThat(spot.spec().policies().get("cpu-etl").executor().cores()).isEqualTo(2);
    assertThat(wf.spec().policies().get("cpu-etl").market().name()).isEqualTo("ON_DEMAND");
    assertThatThrownBy(() -> wf.withPolicies(Map.of("cpu-etl", Map.of("market", "cheap"))))
        .isInstanceOf(StagecraftException.class).hasMessageContaining("policy 'cpu-etl' field 'market'");
  }

  @Test
  void aWorkflowLaunchedInAChildJvmRunsInTheSameWorkspace() throws Exception {
    ChildRun child = session.launch(people(), "c1");
    int code = child.await(Duration.ofSeconds(150));
    assertThat(code).as(child.log()).isZero();
    assertThat(child.log()).contains("Run c1 SUCCEEDED");
    Run run = session.open("c1");
    assertThat(run.status()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(run.preview("older", 5).column("name")).containsExactly("ann", "<b>bob</b>");
    try (var files = Files.list(Path.of(""))) {
      assertThat(files.map(p -> p.getFileName().toString())).as("the temporary workflow file is gone")
          .noneMatch(n -> n.startsWith(".people-"));
    }
  }

  @Test
  void closeDeletesATemporaryWorkspaceButKeepsAGivenOneAndAnAdoptedSparkSession() throws Exception {
    Session temporary = Session.builder().spark(LocalSpark.get())
        .progressTo(new PrintStream(printed, true, StandardCharsets.UTF_8)).start();
    Path folder = Path.of(java.net.URI.create(temporary.workspace()));
    assertThat(folder.toString()).contains("stagecraft-notebook-");
    temporary.run(people(temporary), "w1").requireSucceeded();
    assertThat(Ledgers.newestFile(folder, "w1")).exists();
    temporary.close();
    assertThat(folder).doesNotExist();
    assertThat(LocalSpark.get().sparkContext().isStopped()).as("an adopted session keeps running").isFalse();

    session.run(people(), "w2");
    session.close();
    assertThat(Ledgers.newestFile(dir.resolve("ws"), "w2")).as("a given workspace is kept").exists();
  }

  static long distinctColours(BufferedImage img) {
    java.util.Set<Integer> colours = new java.util.HashSet<>();
    for (int x = 0; x < img.getWidth(); x += 3) {
      for (int y = 0; y < img.getHeight(); y += 3) {
        colours.add(img.getRGB(x, y));
      }
    }
    return colours.size();
  }

}
