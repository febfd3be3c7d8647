package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The peers' Python environment ({@code bin/peer-env}: pyspark of Stagecraft's Spark version, ONNX Runtime, torch,
 * Ray; installed into the Stagecraft cache on first use) and the peer scripts under
 * {@code jobs/src/main/python/peers/}, run as child processes whose last stdout line is their JSON result.
 */
final class PeerEnv {
  private final Path home;
  private final Path python;

  private PeerEnv(Path home, Path python) {
    this.home = home;
    this.python = python;
  }

  /** Installs the environment if needed (minutes, once) and returns it. */
  static PeerEnv get() throws IOException, InterruptedException {
    Path home = Path.of(Settings.home()).toAbsolutePath();
    Path script = home.resolve("bin/peer-env");
    if (!Files.isExecutable(script)) {
      throw StagecraftException.user("Cannot find %s (run from the Stagecraft repository, or set %s)", script,
          Settings.HOME_ENV);
    }
    Process p = new ProcessBuilder(script.toString()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    String out = new String(p.getInputStream().readAllBytes()).strip();
    if (p.waitFor() != 0 || out.isEmpty()) {
      throw new StagecraftException(ErrorCategory.EXTERNAL, "bin/peer-env failed (exit " + p.exitValue()
          + "); its output is above");
    }
    return new PeerEnv(home, Path.of(out.lines().reduce((a, b) -> b).orElseThrow(), "bin", "python"));
  }

  /**
   * Runs peer script {@code name} with {@code args}; its stderr goes to ours, its last stdout line is the result.
   */
  JsonNode run(String name, String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of(python.toString(),
        home.resolve("jobs/src/main/python/peers").resolve(name).toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT);
    pb.environment().putIfAbsent("JAVA_HOME", System.getProperty("java.home"));
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes());
    int code = p.waitFor();
    String last = out.strip().lines().reduce((a, b) -> b).orElse("");
    if (code != 0 || !last.startsWith("{")) {
      throw new StagecraftException(ErrorCategory.EXTERNAL, "peer " + name + " " + String.join(" ", args)
          + " failed (exit " + code + "); its output is above" + (last.isEmpty() ? "" : "; last line: " + last));
    }
    return Results.JSON.readTree(last);
  }
}
