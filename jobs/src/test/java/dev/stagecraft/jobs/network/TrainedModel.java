package dev.stagecraft.jobs.network;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stagecraft.inference.bundle.ParameterFile;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/** The model bundle a train step wrote, read through its ledger record. */
final class TrainedModel {
  private TrainedModel() {}

  /** Rows of {@code loss.csv}: {step, loss}. */
  static List<double[]> lossCurve(JsonNode fit) throws IOException {
    List<double[]> out = new ArrayList<>();
    try (InputStream in = open(fit, "loss.csv")) {
      for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().skip(1).toList()) {
        String[] f = line.split(",");
        out.add(new double[] {Double.parseDouble(f[0]), Double.parseDouble(f[2])});
      }
    }
    return out;
  }

  static float[] weights(JsonNode fit) throws IOException {
    try (InputStream in = open(fit, "weights.bin")) {
      return ParameterFile.read(in);
    }
  }

  private static InputStream open(JsonNode fit, String file) throws IOException {
    Path bundle = new Path(fit.at("/outputs/model/uri").asText());
    return bundle.getFileSystem(new Configuration()).open(new Path(bundle, file));
  }
}
