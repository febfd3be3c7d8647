package dev.stagecraft.jobs.engine;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.spi.StepConfig;
import java.util.Optional;
import java.util.function.Consumer;
import org.apache.hadoop.fs.Path;

/**
 * Runs one step of a run as a Spark application of its own ({@link Placement}) and waits for it to end. The
 * application runs {@code stagecraft step} for the same run and workspace: it records the step in the run's ledger
 * itself, under the lease of the run that launched it, and leaves what its executors used in {@code usageFile} for
 * the run's cost report.
 */
public interface StepLauncher {
  /**
   * Launches the step's application and waits for it.
   *
   * @param progress receives the step's progress lines as the application prints them
   * @throws Exception if the application cannot be launched at all (no Spark distribution, no jar)
   */
  Launched launch(Request request, Consumer<String> progress) throws Exception;

  /**
   * @param policy the policy the application's executors follow: the step's, or as right-sized from history
   * @param parentLease the launching run's lease ({@code EPOCH:TOKEN}): the launched {@code step} runs under it
   * @param usageFile where the launched application writes its usage
   * @param logFile where the application's output is kept (in the workspace)
   * @param preparedFile what the step's {@code prepare} returned (JSON), for the launched attempt to read
   */
  record Request(WorkflowSpec spec, StepConfig step, Optional<ResourcePolicy> policy, String runId,
      Workspace workspace, String parentLease, Path usageFile, Path logFile, Path preparedFile) {
    public Request {
      requireNonNull(spec, "spec is null");
      requireNonNull(step, "step is null");
      requireNonNull(policy, "policy is null");
      requireNonNull(runId, "runId is null");
      requireNonNull(workspace, "workspace is null");
      requireNonNull(parentLease, "parentLease is null");
      requireNonNull(usageFile, "usageFile is null");
      requireNonNull(logFile, "logFile is null");
      requireNonNull(preparedFile, "preparedFile is null");
    }
  }

  /**
   * How the application ended.
   *
   * @param exitCode the exit code of its {@code spark-submit} process
   * @param sparkSubmit the {@code spark-submit} that launched it
   * @param log where its output is kept
   */
  record Launched(int exitCode, String sparkSubmit, String log, double seconds) {}
}
