package dev.stagecraft.jobs.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** Runs a command to completion with its output in files; kills it (and its children) on timeout. */
public final class Proc {
  private Proc() {}

  /** What a finished command left. */
  public record Result(int code, String out, String err) {
    /** The lines of stderr that are Stagecraft's own (prefixed {@code stagecraft: }). */
    public List<String> stagecraftErrLines() {
      return err.lines().filter(l -> l.startsWith("stagecraft: ")).toList();
    }
  }

  public static Result run(List<String> cmd, Map<String, String> env, Path cwd, Duration timeout)
      throws IOException, InterruptedException {
    Files.createDirectories(cwd);
    Path out = Files.createTempFile(cwd, "out", ".txt");
    Path err = Files.createTempFile(cwd, "err", ".txt");
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(cwd.toFile())
        .redirectOutput(out.toFile()).redirectError(err.toFile());
    pb.environment().putAll(env);
    Process p = pb.start();
    if (!p.waitFor(timeout.toSeconds(), TimeUnit.SECONDS)) {
      kill(p);
      throw new AssertionError("Timed out after " + timeout + ": " + cmd + "\nstdout:\n" + Files.readString(out)
          + "\nstderr:\n" + Files.readString(err));
    }
    return new Result(p.exitValue(), Files.readString(out), withoutJvmNotices(Files.readString(err)));
  }

  /**
   * A process's stderr without the JVM's own start-up notice about the incubator module that Spark 4.2's launcher
   * adds to every Spark JVM (and Stagecraft's scripts with it, on that line): it is not the program's output.
   */
  public static String withoutJvmNotices(String err) {
    return err.replaceAll("(?m)^WARNING: Using incubator modules: jdk\\.incubator\\.vector\\R", "");
  }

  /** Stops a process and every process it started (SIGTERM, then SIGKILL after 10 s). */
  public static void kill(Process p) {
    List<ProcessHandle> all = new java.util.ArrayList<>(p.descendants().toList());
    all.add(0, p.toHandle());
    all.forEach(ProcessHandle::destroy);
    long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
    for (ProcessHandle h : all) {
      while (h.isAlive() && System.nanoTime() < deadline) {
        try {
          Thread.sleep(100);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          break;
        }
      }
      if (h.isAlive()) {
        h.destroyForcibly();
      }
    }
  }

  public static int freePort() throws IOException {
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      return s.getLocalPort();
    }
  }
}
