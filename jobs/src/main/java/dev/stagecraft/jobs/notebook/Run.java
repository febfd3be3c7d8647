package dev.stagecraft.jobs.notebook;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.jobs.engine.CostFiles;
import dev.stagecraft.jobs.engine.OutputTables;
import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.RunStatus;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.policies.cost.CostReport;
import dev.stagecraft.spi.StagecraftException;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import javax.imageio.ImageIO;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * A run as its ledger recorded it when the call that made this object returned: step states, outputs, metrics and
 * cost, with the run's files (model bundles, the cost chart, checkpoints) read from the workspace on demand.
 */
public final class Run {
  private final RunLedger ledger;
  private final Workspace workspace;
  private final SparkSession spark;

  Run(RunLedger ledger, Workspace workspace, SparkSession spark) {
    this.ledger = requireNonNull(ledger, "ledger is null");
    this.workspace = requireNonNull(workspace, "workspace is null");
    this.spark = requireNonNull(spark, "spark is null");
  }

  public String id() {
    return ledger.runId();
  }

  public RunStatus status() {
    return ledger.status();
  }

  public boolean succeeded() {
    return ledger.status() == RunStatus.SUCCEEDED;
  }

  public RunLedger ledger() {
    return ledger;
  }

  public StepRecord step(String id) {
    StepRecord r = ledger.steps().get(id);
    if (r == null) {
      throw StagecraftException.user("Invalid step '%s': run '%s' has no such step (expected one of: %s)", id, id(),
          String.join(", ", ledger.steps().keySet()));
    }
    return r;
  }

  /** Throws, with the first failed step's error, unless the run succeeded. Returns this run for chaining. */
  public Run requireSucceeded() {
    if (succeeded()) {
      return this;
    }
    String why = ledger.steps().entrySet().stream().filter(e -> e.getValue().status() == StepStatus.FAILED)
        .findFirst().map(e -> "step '" + e.getKey() + "' failed: " + e.getValue().error()).orElse("no step failed");
    throw StagecraftException.user("Run '%s' is %s (expected SUCCEEDED): %s", id(), status(), why);
  }

  /** A metric a step recorded (e.g. {@code validation_accuracy} of a train step, {@code accuracy} of an infer step). */
  public double metric(String step, String name) {
    StepRecord r = step(step);
    Double v = r.metrics().get(name);
    if (v == null) {
      throw StagecraftException.user("Cannot read metric '%s' of step '%s' in run '%s': the step is %s and recorded "
          + "%s", name, step, id(), r.status(), r.metrics().isEmpty() ? "no metrics"
          : "only: " + String.join(", ", new TreeMap<>(r.metrics()).keySet()));
    }
    return v;
  }

  /** The URI of a step's committed output ({@code output}, {@code model}, {@code quarantine}, …). */
  public String outputUri(String step, String name) {
    OutputRecord o = step(step).outputs().get(name);
    if (o == null) {
      throw StagecraftException.user("Cannot find output '%s' of step '%s' in run '%s': the step is %s and committed "
          + "%s", name, step, id(), step(step).status(), step(step).outputs().isEmpty() ? "no outputs"
          : "only: " + String.join(", ", step(step).outputs().keySet()));
    }
    return o.uri();
  }

  /** A step's table output (its {@code output}, or {@code name}) as a DataFrame. */
  public Dataset<Row> output(String step) {
    return output(step, "output");
  }

  public Dataset<Row> output(String step, String name) {
    String uri = outputUri(step, name);
    OutputRecord o = step(step).outputs().get(name);
    if (!o.isTable()) {
      throw StagecraftException.user("Cannot read output '%s' of step '%s' as a table: it is a %s (%s)", name, step,
          o.format(), uri);
    }
    return OutputTables.read(spark, o);
  }

  /** The first {@code rows} rows of a step's table output, for {@code display(preview.html(), "text/html")}. */
  public Table preview(String step, int rows) {
    return Table.of(output(step), rows);
  }

  /** One row per step: kind, status, attempts, seconds, rows and the step's key numbers (or its error). */
  public Table table() {
    List<List<Object>> rows = new ArrayList<>();
    for (Map.Entry<String, StepRecord> e : ledger.steps().entrySet()) {
      StepRecord r = e.getValue();
      // The step's main table ("output"; an infer step also has "quarantine"), else its first table.
      OutputRecord main = r.outputs().get("output");
      Long count = main != null && main.isTable() ? main.rows() : r.outputs().values().stream()
          .filter(OutputRecord::isTable).map(OutputRecord::rows).findFirst().orElse(null);
      List<String> notes = new ArrayList<>();
      if (r.error() != null) {
        notes.add(r.error());
      }
      for (String k : List.of("validation_accuracy", "train_accuracy", "accuracy", "final_loss", "resumed_from_step",
          "scored_rows", "bad_rows")) {
        Double v = r.metrics().get(k);
        if (v != null) {
          notes.add(k + " " + Table.format(v));
        }
      }
      rows.add(Arrays.asList(e.getKey(), r.kind(), r.status().name(), r.attempts(), r.seconds(), count,
          String.join(", ", notes)));
    }
    return new Table(List.of("step", "kind", "status", "attempts", "seconds", "rows", "notes"), rows);
  }

  /** The loss curve a train step wrote into its model bundle, as an image ({@code display(image)}). */
  public BufferedImage lossCurve(String step) {
    Path dir = new Path(outputUri(step, "model"));
    try {
      ModelBundle bundle = ModelBundle.open(dir.getFileSystem(spark.sparkContext().hadoopConfiguration()), dir);
      return image(bundle.file(ModelBundle.LOSS_CURVE), dir + "/" + ModelBundle.LOSS_CURVE);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read the loss curve of step '%s' from %s: %s", step, dir,
          e.getMessage());
    }
  }

  /** The run's cost report ({@code runs/RUN/cost.json}); whole runs have one, single steps do not. */
  public CostReport cost() {
    return CostFiles.read(workspace, id()).orElseThrow(() -> StagecraftException.user("Cannot show the cost of run "
        + "'%s': no cost report at %s (only whole runs are metered, not single steps)", id(),
        CostFiles.json(workspace, id())));
  }

  /** The run's cost chart ({@code runs/RUN/cost.png}: cost per step, busy vs idle). */
  public BufferedImage costChart() {
    cost(); // the same message when there is none
    Path png = CostFiles.png(workspace, id());
    try (InputStream in = workspace.fs().open(png)) {
      return image(in.readAllBytes(), png.toString());
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read %s: %s", png, e.getMessage());
    }
  }

  /**
   * The checkpoint a train step started from in its last attempt: its global step number, or 0 when it started from
   * scratch (no checkpoint, or {@code resume: fresh}).
   */
  public long resumedFromCheckpoint(String step) {
    return (long) metric(step, "resumed_from_step");
  }

  /** The global step numbers of the complete checkpoints of a train step in this run, oldest first. */
  public List<Long> checkpoints(String step) {
    return checkpoints(workspace, id(), step);
  }

  static List<Long> checkpoints(Workspace ws, String runId, String step) {
    Path root = new Path(ws.root(), "checkpoints/" + runId + "/" + step);
    List<Long> out = new ArrayList<>();
    try {
      if (!ws.fs().exists(root)) {
        return out;
      }
      for (FileStatus s : ws.fs().listStatus(root)) {
        String n = s.getPath().getName();
        // The manifest is written last: a folder without one is a checkpoint still being written.
        if (s.isDirectory() && n.matches("step-\\d+") && ws.fs().exists(new Path(s.getPath(), "manifest.json"))) {
          out.add(Long.parseLong(n.substring(5)));
        }
      }
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot list the checkpoints under %s: %s", root, e.getMessage());
    }
    out.sort(null);
    return out;
  }

  static BufferedImage image(byte[] png, String where) throws IOException {
    BufferedImage img = ImageIO.read(new ByteArrayInputStream(png));
    if (img == null) {
      throw new IOException("not a PNG image: " + where);
    }
    return img;
  }

  @Override
  public String toString() {
    return "run " + id() + " of workflow " + ledger.workflow() + ": " + status() + " (workspace " + workspace.uri()
        + ")";
  }
}
