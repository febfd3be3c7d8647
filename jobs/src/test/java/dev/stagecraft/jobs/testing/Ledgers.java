package dev.stagecraft.jobs.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/** A run's ledger as a user finds it on disk: the newest generation in {@code runs/RUN-ID/ledger/}. */
public final class Ledgers {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Ledgers() {}

  /** The newest generation's file in a {@code file:} workspace. */
  public static Path newestFile(Path workspace, String runId) throws IOException {
    Path dir = workspace.resolve("runs").resolve(runId).resolve("ledger");
    try (Stream<Path> files = Files.list(dir)) {
      return files.filter(f -> f.getFileName().toString().matches("\\d{10}\\.json"))
          .max(Comparator.comparing(f -> f.getFileName().toString()))
          .orElseThrow(() -> new AssertionError("no ledger generation in " + dir));
    }
  }

  /** The newest generation, parsed. */
  public static JsonNode newest(Path workspace, String runId) throws IOException {
    return JSON.readTree(newestFile(workspace, runId).toFile());
  }
}
