package dev.stagecraft.jobs.ledger;

import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.spi.StagecraftException;
import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.util.Optional;
import java.util.regex.Pattern;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The workspace: where runs, outputs, models and checkpoints live, on any Hadoop FileSystem.
 *
 * <pre>
 * runs/RUN-ID/ledger/NNNNNNNNNN.json           the run's ledger, one generation per update (see LedgerStore)
 * runs/RUN-ID/run.lease/NNNNNNNNNN.json        who holds the run, one epoch per holder (see Lease)
 * runs/RUN-ID/steps/STEP/step.lease/…          who holds a step run on its own (`step`)
 * runs/RUN-ID/steps/STEP/attempt-N/OUTPUT/     an attempt's outputs; committed when the ledger names them
 * </pre>
 *
 * <p>The ledger and the leases need a store that creates files exclusively ({@link
 * AtomicFiles#exclusiveCreateUnsupported}). They live in the workspace unless a <em>ledger store</em> is given (an
 * HDFS or {@code file:} path every process of the run reaches, for a workspace on a store without exclusive create:
 * {@link #LEDGER_STORE_PROPERTY});
 * then under {@code LEDGER-STORE/SCHEME/AUTHORITY/PATH-OF-WORKSPACE/runs/…}.
 */
public final class Workspace {
  /** The default workspace, relative to the current directory. */
  public static final String DEFAULT = ".stagecraft";

  /**
   * The Hadoop property naming a ledger store: {@code spark.hadoop.stagecraft.ledger.store} on spark-submit, or in
   * core-site.xml, so every process of a run (and {@code status}) finds it.
   */
  public static final String LEDGER_STORE_PROPERTY = "stagecraft.ledger.store";

  private static final Pattern RUN_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._+-]{0,127}");

  private final String uri;
  private final Path root;
  private final FileSystem fs;
  private final Optional<String> ledgerStore;
  private final Path ledgerRoot;
  private final FileSystem ledgerFs;

  /**
   * @param conf the Hadoop configuration: the workspace's file system, and {@value #LEDGER_STORE_PROPERTY} if ledgers
   *     and leases live elsewhere
   */
  public Workspace(String location, Configuration conf) {
    this.uri = normalise(location);
    this.root = new Path(uri);
    this.ledgerStore = Optional.ofNullable(conf.getTrimmed(LEDGER_STORE_PROPERTY)).filter(s -> !s.isEmpty())
        .map(Workspace::normalise);
    try {
      this.fs = root.getFileSystem(conf);
      if (this.ledgerStore.isPresent()) {
        URI w = fs.makeQualified(root).toUri();
        String authority = w.getAuthority() == null ? "" : "/" + w.getAuthority();
        this.ledgerRoot = new Path(this.ledgerStore.get() + "/" + w.getScheme() + authority + w.getPath());
        this.ledgerFs = ledgerRoot.getFileSystem(conf);
      } else {
        this.ledgerRoot = root;
        this.ledgerFs = fs;
      }
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot open workspace %s: %s", uri, e.getMessage());
    }
  }

  /**
   * Refuses to write runs here when the ledger's store cannot create files exclusively: two processes of one run
   * could then both commit.
   */
  public void checkLedgerStore() {
    Optional<String> why;
    Path runs = new Path(ledgerRoot, "runs");
    try {
      why = AtomicFiles.exclusiveCreateUnsupported(ledgerFs, runs);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot check the ledger store %s: %s", runs, e.getMessage());
    }
    why.ifPresent(reason -> {
      throw StagecraftException.user("Cannot run in workspace %s: its ledger store %s cannot create a file only if it "
          + "is absent (%s), so two processes of one run could both commit. Keep ledgers and leases on a store that "
          + "can: set the Hadoop property %s (--conf spark.hadoop.%s=… or core-site.xml) to an HDFS or file: path "
          + "that every process of the run reaches, e.g. hdfs://namenode:8020/stagecraft/ledgers", uri,
          ledgerStore.orElse(uri), reason, LEDGER_STORE_PROPERTY, LEDGER_STORE_PROPERTY);
    });
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

  /** Where ledgers and leases are written, if not in the workspace. */
  public Optional<String> ledgerStore() {
    return ledgerStore;
  }

  /** The file system of ledgers and leases (the workspace's, unless a ledger store is set). */
  public FileSystem ledgerFs() {
    return ledgerFs;
  }

  public Path runDir(String runId) {
    return new Path(root, "runs/" + checkRunId(runId));
  }

  /** The run's ledger: a folder of generations on {@link #ledgerFs}. */
  public Path ledgerDir(String runId) {
    return new Path(ledgerRoot, "runs/" + checkRunId(runId) + "/ledger");
  }

  /** The run's lease, on {@link #ledgerFs}. */
  public Path runLease(String runId) {
    return new Path(ledgerRoot, "runs/" + checkRunId(runId) + "/run.lease");
  }

  public Path stepDir(String runId, String step) {
    return new Path(runDir(runId), "steps/" + step);
  }

  /** A step's lease (held by a `step` process), on {@link #ledgerFs}. */
  public Path stepLease(String runId, String step) {
    return new Path(ledgerRoot, "runs/" + checkRunId(runId) + "/steps/" + step + "/step.lease");
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
