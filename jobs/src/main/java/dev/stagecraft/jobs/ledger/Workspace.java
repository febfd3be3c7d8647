package dev.stagecraft.jobs.ledger;

import dev.stagecraft.spi.StagecraftException;
import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.util.regex.Pattern;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The workspace: where runs, outputs, models and checkpoints live, on any Hadoop FileSystem.
 *
 * <pre>
 * runs/RUN-ID/ledger.json                      the run's ledger (written atomically)
 * runs/RUN-ID/run.lease                        held while a `run` is live
 * runs/RUN-ID/steps/STEP/step.lease            held while a `step` is live
 * runs/RUN-ID/steps/STEP/attempt-N/OUTPUT/     an attempt's outputs; committed when the ledger names them
 * </pre>
 */
public final class Workspace {
  /** The default workspace, relative to the current directory. */
  public static final String DEFAULT = ".stagecraft";

  private static final Pattern RUN_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._+-]{0,127}");

  private final String uri;
  private final Path root;
  private final FileSystem fs;

  public Workspace(String location, Configuration conf) {
    this.uri = normalise(location);
    this.root = new Path(uri);
    try {
      this.fs = root.getFileSystem(conf);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot open workspace %s: %s", uri, e.getMessage());
    }
  }

  /** A URI for {@code location}: scheme URIs as given, plain paths made absolute {@code file:} URIs. */
  public static String normalise(String location) {
    String l = location.strip();
    if (l.isEmpty()) {
      throw StagecraftException.user("Invalid workspace '': expected a path or a URI such as hdfs://nn:8020/stagecraft");
    }
    URI u = URI.create(l.replace(" ", "%20"));
    String s = u.getScheme() == null ? new File(l).getAbsoluteFile().toPath().normalize().toUri().toString() : l;
    return s.endsWith("/") ? s.substring(0, s.length() - 1) : s;
  }

  public static String checkRunId(String runId) {
    if (runId == null || !RUN_ID.matcher(runId).matches()) {
      throw StagecraftException.user(
          "Invalid run id '%s' (expected 1-128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit)",
          runId);
    }
    return runId;
  }

  public String uri() {
    return uri;
  }

  public FileSystem fs() {
    return fs;
  }

  public Path root() {
    return root;
  }

  public Path runDir(String runId) {
    return new Path(root, "runs/" + checkRunId(runId));
  }

  public Path ledger(String runId) {
    return new Path(runDir(runId), "ledger.json");
  }

  public Path runLease(String runId) {
    return new Path(runDir(runId), "run.lease");
  }

  public Path stepDir(String runId, String step) {
    return new Path(runDir(runId), "steps/" + step);
  }

  public Path stepLease(String runId, String step) {
    return new Path(stepDir(runId, step), "step.lease");
  }

  public Path attemptDir(String runId, String step, int attempt) {
    return new Path(stepDir(runId, step), "attempt-" + attempt);
  }

  /** An attempt's intermediate data ({@code StepContext.scratchLocation}), outside its staging folder. */
  public Path scratchDir(String runId, String step, int attempt) {
    return new Path(stepDir(runId, step), "scratch-" + attempt);
  }

  @Override
  public String toString() {
    return uri;
  }
}
