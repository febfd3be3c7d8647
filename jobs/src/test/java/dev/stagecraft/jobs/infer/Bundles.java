package dev.stagecraft.jobs.infer;

import dev.stagecraft.inference.bundle.BundleManifest;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.inference.bundle.ParameterFile;
import java.io.ByteArrayOutputStream;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;

/** Model bundles written by tests, with known weights, in the format a {@code train} step writes. */
final class Bundles {
  private Bundles() {}

  /** Random weights for a network of the given widths (inputs, hidden…, outputs), in the bundle's layout. */
  static float[] randomParameters(List<Integer> widths, long seed) {
    int n = 0;
    for (int i = 0; i + 1 < widths.size(); i++) {
      n += widths.get(i) * widths.get(i + 1) + widths.get(i + 1);
    }
    float[] p = new float[n];
    SplittableRandom r = new SplittableRandom(seed);
    for (int i = 0; i < n; i++) {
      p[i] = (float) (r.nextDouble() * 2 - 1);
    }
    return p;
  }

  static Path write(Path dir, String type, List<Integer> hidden, String task, int numClasses, List<String> features,
      String featureColumn, double[] mean, double[] std, float[] params) throws Exception {
    Map<String, Object> model = new LinkedHashMap<>();
    model.put("type", type);
    model.put("hidden", hidden);
    model.put("activation", "relu");
    model.put("task", task);
    model.put("num_features", mean.length);
    model.put("num_classes", numClasses);
    ByteArrayOutputStream weights = new ByteArrayOutputStream();
    ParameterFile.write(params, weights);
    List<Double> labels = task.equals("regression") ? List.of()
        : java.util.stream.IntStream.range(0, Math.max(2, numClasses)).mapToObj(i -> (double) i).toList();
    BundleManifest m = new BundleManifest(BundleManifest.FORMAT_VERSION, "test", "v1", "now", "run", "fit", model,
        features, featureColumn, "label", new BundleManifest.Standardization(mean, std), labels, Map.of(), Map.of(),
        null);
    org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path(dir.toUri());
    ModelBundle.write(FileSystem.getLocal(new Configuration()), p, m, Map.of(ModelBundle.WEIGHTS,
        weights.toByteArray()));
    return dir;
  }
}
