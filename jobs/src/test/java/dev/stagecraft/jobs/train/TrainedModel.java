package dev.stagecraft.jobs.train;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.inference.bundle.ParameterFile;
import dev.stagecraft.jobs.ledger.StepRecord;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/** The model bundle a train step wrote, read through its ledger record. */
public final class TrainedModel {
  private TrainedModel() {}

  /** Rows of {@code loss.csv}: {step, loss}. */
  public static List<double[]> lossCurve(JsonNode fit) throws IOException {
    List<double[]> out = new ArrayList<>();
    try (InputStream in = open(new Path(fit.at("/outputs/model/uri").asText()), "loss.csv")) {
      for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().skip(1).toList()) {
        String[] f = line.split(",");
        out.add(new double[] {Double.parseDouble(f[0]), Double.parseDouble(f[2])});
      }
    }
    return out;
  }

  public static float[] weights(JsonNode fit) throws IOException {
    try (InputStream in = open(new Path(fit.at("/outputs/model/uri").asText()), "weights.bin")) {
      return ParameterFile.read(in);
    }
  }

  /** The parameters of the bundle a step record names, once the bundle has opened as {@code infer} opens it. */
  public static float[] weights(StepRecord fit) throws IOException {
    Path bundle = new Path(fit.outputs().get("model").uri());
    ModelBundle.open(bundle.getFileSystem(new Configuration()), bundle);
    try (InputStream in = open(bundle, "weights.bin")) {
      return ParameterFile.read(in);
    }
  }

  /** The newest step with a complete checkpoint (its manifest written) under a step's checkpoint folder, or -1. */
  public static long newestCheckpoint(java.nio.file.Path stepCheckpoints) throws IOException {
    if (!java.nio.file.Files.isDirectory(stepCheckpoints)) {
      return -1;
    }
    try (var dirs = java.nio.file.Files.list(stepCheckpoints)) {
      return dirs.filter(d -> java.nio.file.Files.exists(d.resolve("manifest.json")))
          .mapToLong(d -> Long.parseLong(d.getFileName().toString().substring("step-".length()))).max().orElse(-1);
    }
  }

  private static InputStream open(Path bundle, String file) throws IOException {
    return bundle.getFileSystem(new Configuration()).open(new Path(bundle, file));
  }
}
