package dev.stagecraft.jobs.examples;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/** Every example workflow (the demo among them) stays valid against the step kinds on the classpath. */
class ExamplesTest {
  static final Path EXAMPLES = Path.of(System.getProperty("stagecraft.repo.root"), "jobs/examples");

  @Test
  void everyExampleWorkflowValidates() throws Exception {
    List<Path> workflows;
    try (Stream<Path> s = Files.walk(EXAMPLES)) {
      workflows = s.filter(p -> p.getFileName().toString().endsWith(".yaml")).toList();
    }
    assertThat(workflows).isNotEmpty();
    WorkflowLoader loader = new WorkflowLoader(StepKinds.discover());
    for (Path wf : workflows) {
      WorkflowSpec spec = loader.load(wf);
      assertThat(spec.steps()).as(wf.toString()).isNotEmpty();
    }
  }

  @Test
  void theDemoTrainsOnTwoBarrierWorkersAfterLoadingBothSplits() throws Exception {
    WorkflowSpec demo = new WorkflowLoader(StepKinds.discover()).load(EXAMPLES.resolve("a9a/workflow.yaml"));
    assertThat(demo.step("fit").kind()).isEqualTo("train");
    assertThat(demo.step("fit").intValue("workers", 1)).isEqualTo(2);
    assertThat(demo.step("fit").policy()).contains("gpu-training");
    assertThat(demo.step("score").policy()).contains("gpu-inference");
    assertThat(demo.steps()).allMatch(s -> s.policy().isPresent());
    assertThat(demo.upstream().get("fit")).containsExactlyInAnyOrder("train_raw", "test_raw");
    assertThat(Files.isRegularFile(EXAMPLES.resolve("a9a/data/a9a.libsvm"))).isTrue();
  }
}
