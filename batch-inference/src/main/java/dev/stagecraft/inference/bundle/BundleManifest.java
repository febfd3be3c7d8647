package dev.stagecraft.inference.bundle;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What a model bundle ({@code models/NAME/VERSION/manifest.json}) says about its model: enough to score new data
 * without the training run — the model's shape, the features by name and order, the standardisation to apply, the
 * label mapping — plus how it was trained, its metrics, and every file of the bundle with its size and SHA-256.
 *
 * <p>The manifest is written last: a bundle exists only once its manifest does, and a reader checks every file
 * against it.
 *
 * @param model the model spec: {@code type}, {@code task}, {@code num_features}, {@code num_outputs}, {@code hidden},
 *     {@code activation}, …
 * @param features feature names in the order the model takes them
 * @param featureColumn the vector column the features came from, or null if they are {@code features} columns
 * @param labels class index → original label value (classification); empty for regression
 * @param files file name (relative to the bundle folder) → size and checksum; filled in by {@link ModelBundle#write}
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record BundleManifest(
    int formatVersion,
    String name,
    String version,
    String created,
    String runId,
    String step,
    Map<String, Object> model,
    List<String> features,
    String featureColumn,
    String labelColumn,
    Standardization standardization,
    List<Double> labels,
    Map<String, Double> metrics,
    Map<String, Object> training,
    Map<String, FileEntry> files) {

  public static final int FORMAT_VERSION = 1;

  public BundleManifest {
    model = model == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(model));
    features = features == null ? List.of() : List.copyOf(features);
    labels = labels == null ? List.of() : List.copyOf(labels);
    metrics = metrics == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(metrics));
    training = training == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(training));
    files = files == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(files));
  }

  /**
   * Per-feature mean and standard deviation; a feature is fed to the model as (x - mean) / std. Every std must be
   * positive and finite: a zero std made SQL's division give null on Spark 3.5 and fail the task on Spark 4 (ANSI
   * mode), so a bundle carrying one is refused when it is read, on both lines alike.
   */
  public record Standardization(double[] mean, double[] std) {
    public Standardization {
      if (mean.length != std.length) {
        throw new IllegalArgumentException("Invalid standardisation: " + mean.length + " means and " + std.length
            + " standard deviations (expected one of each per feature)");
      }
      for (int j = 0; j < std.length; j++) {
        if (!(std[j] > 0) || !Double.isFinite(std[j]) || !Double.isFinite(mean[j])) {
          throw new IllegalArgumentException("Invalid standardisation of feature " + j + ": mean " + mean[j]
              + ", standard deviation " + std[j] + " (expected a finite mean and a positive, finite deviation)");
        }
      }
      mean = mean.clone();
      std = std.clone();
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof Standardization s && java.util.Arrays.equals(mean, s.mean)
          && java.util.Arrays.equals(std, s.std);
    }

    @Override
    public int hashCode() {
      return 31 * java.util.Arrays.hashCode(mean) + java.util.Arrays.hashCode(std);
    }
  }

  /** One file of the bundle. */
  public record FileEntry(long bytes, String sha256) {}

  BundleManifest withFiles(Map<String, FileEntry> newFiles) {
    return new BundleManifest(formatVersion, name, version, created, runId, step, model, features, featureColumn,
        labelColumn, standardization, labels, metrics, training, newFiles);
  }
}
