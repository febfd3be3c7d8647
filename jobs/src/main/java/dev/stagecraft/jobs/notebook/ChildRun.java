package dev.stagecraft.jobs.notebook;

import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.spi.StagecraftException;
import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * A workflow run in a child JVM ({@code stagecraft run}, embedded local Spark) started by {@link Session#launch}: wait
 * for its first checkpoint, kill it as a crashed driver would die, or wait for it to end.
 */
public final class ChildRun {
  private static final Duration POLL = Duration.ofMillis(200);

  private final Process process;
  private final String runId;
  private final Workspace workspace;
  private final Path log;
  private final Optional<Path> tempFile;

  private ChildRun(Process process, String runId, Workspace workspace, Path log, Optional<Path> tempFile) {
    this.process = process;
    this.runId = runId;
    this.workspace = workspace;
    this.log = log;
    this.tempFile = tempFile;
  }

  static ChildRun start(Workflow workflow, String runId, Workspace workspace, List<String> jvmFlags) {
    try {
      Optional<Path> temp = Optional.empty();
      Path file;
      if (workflow.file().isPresent()) {
        file = workflow.file().get().toAbsolutePath();
      } else {
        // Relative paths in the workflow are relative to its folder: write the text there, under a hidden name.
        String dir = workflow.spec().directory();
        if (!dir.startsWith("file:")) {
          throw StagecraftException.user("Cannot launch %s in a child JVM: its folder %s is not local", workflow.name(),
              dir);
        }
        Path folder = Path.of(URI.create(dir));
        file = Files.createTempFile(folder, "." + workflow.name() + "-", ".yaml");
        Files.writeString(file, workflow.yaml());
        temp = Optional.of(file);
      }
      List<String> cmd = new ArrayList<>();
      cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
      cmd.addAll(jvmFlags);
      cmd.add("-Xmx2g");
      cmd.add("-D" + Settings.MASTER_CONF + "=local[2]");
      cmd.add("-D" + Settings.UI_ENABLED_CONF + "=false");
      cmd.add("-D" + Settings.DRIVER_HOST_CONF + "=127.0.0.1");
      cmd.add("-D" + Settings.DRIVER_BIND_ADDRESS_CONF + "=127.0.0.1");
      cmd.add(Settings.MAIN_CLASS);
      cmd.addAll(List.of("run", file.toString(), "--run-id", runId, "--workspace", workspace.uri()));
      for (Map.Entry<String, String> e : workflow.overrides().entrySet()) {
        cmd.add("--set");
        cmd.add(e.getKey() + "=" + e.getValue());
      }
      Path log = Files.createTempFile("stagecraft-child-" + runId + "-", ".log");
      ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
      pb.environment().put(Settings.PROGRESS_ENV, Settings.PROGRESS_PLAIN);
      // Not on the command line: ONNX Runtime's Java binding crashes the JVM as it loads when the command line is
      // longer than about 4 KiB (see bin/stagecraft).
      pb.environment().put("CLASSPATH", classpath());
      return new ChildRun(pb.start(), runId, workspace, log, temp);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot start a child JVM for run '%s': %s", runId, e.getMessage());
    }
  }

  /**
   * This JVM's classpath as a path string: the entries of every {@link URLClassLoader} from this class's loader up
   * (a notebook kernel loads the jars it was given in one), then {@code java.class.path}.
   */
  static String classpath() {
    LinkedHashSet<String> entries = new LinkedHashSet<>();
    for (ClassLoader l = ChildRun.class.getClassLoader(); l != null; l = l.getParent()) {
      if (l instanceof URLClassLoader u) {
        for (URL url : u.getURLs()) {
          if ("file".equals(url.getProtocol())) {
            try {
              entries.add(Path.of(url.toURI()).toString());
            } catch (URISyntaxException | IllegalArgumentException e) {
              entries.add(url.getPath());
            }
          }
        }
      }
    }
    for (String e : System.getProperty("java.class.path", "").split(File.pathSeparator)) {
      if (!e.isBlank()) {
        entries.add(e);
      }
    }
    return String.join(File.pathSeparator, entries);
  }

  public String runId() {
    return runId;
  }

  public boolean isAlive() {
    return process.isAlive();
  }

  /** Everything the child printed so far. */
  public String log() {
    try {
      return Files.readString(log);
    } catch (IOException e) {
      return "(cannot read " + log + ": " + e.getMessage() + ")";
    }
  }

  /**
   * Waits until train step {@code step} has written a complete checkpoint (its manifest is written last) and returns
   * its global step number.
   *
   * @throws StagecraftException if the child ends first or {@code timeout} passes, with the end of its log
   */
  public long awaitCheckpoint(String step, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      List<Long> saved = Run.checkpoints(workspace, runId, step);
      if (!saved.isEmpty()) {
        return saved.get(saved.size() - 1);
      }
      if (!process.isAlive()) {
        throw StagecraftException.user("Cannot wait for a checkpoint of step '%s' of run '%s': the child JVM ended "
            + "(exit code %d) before writing one. Its log ends with:%n%s", step, runId, process.exitValue(), tail());
      }
      if (System.nanoTime() > deadline) {
        throw StagecraftException.user("Cannot wait for a checkpoint of step '%s' of run '%s': none after %s. Its "
            + "log ends with:%n%s", step, runId, timeout, tail());
      }
      sleep();
    }
  }

  /** Kills the child at once (SIGKILL: no shutdown hook runs, as when a driver's machine dies) and waits for it. */
  public void kill() {
    process.destroyForcibly();
    try {
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        throw StagecraftException.user("Cannot kill the child JVM of run '%s' (pid %d): still alive after 30 s", runId,
            process.pid());
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("Interrupted while killing run " + runId, e);
    } finally {
      cleanUp();
    }
  }

  /** Waits for the child to end and returns its exit code (0: the run succeeded). */
  public int await(Duration timeout) {
    try {
      if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        throw StagecraftException.user("Run '%s' in the child JVM did not end within %s. Its log ends with:%n%s",
            runId, timeout, tail());
      }
      return process.exitValue();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("Interrupted while waiting for run " + runId, e);
    } finally {
      if (!process.isAlive()) {
        cleanUp();
      }
    }
  }

  private void cleanUp() {
    tempFile.ifPresent(f -> {
      try {
        Files.deleteIfExists(f);
      } catch (IOException e) {
        System.err.println("Cannot delete the temporary workflow file " + f + ": " + e.getMessage());
      }
    });
  }

  private String tail() {
    List<String> lines = log().lines().toList();
    return String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()));
  }

  private static void sleep() {
    try {
      Thread.sleep(POLL.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("Interrupted while waiting", e);
    }
  }

  @Override
  public String toString() {
    return "run " + runId + " in child JVM pid " + process.pid() + (process.isAlive() ? " (running)" : " (ended)");
  }
}
