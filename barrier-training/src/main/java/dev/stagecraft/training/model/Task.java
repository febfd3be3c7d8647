package dev.stagecraft.training.model;

import dev.stagecraft.spi.StagecraftException;
import java.util.Locale;

/** What a model predicts, which fixes its output layer, its loss and how labels are encoded. */
public enum Task {
  /** Labels 0 or 1; one logit; sigmoid binary cross-entropy on the logit; predicts p(1). */
  BINARY,
  /** Labels are class indices 0..k-1 (as floats); k logits; softmax cross-entropy; predicts k probabilities. */
  MULTICLASS,
  /** Labels are real values; one output; mean squared error; predicts the value. */
  REGRESSION;

  /**
   * Width of the output layer.
   *
   * @param numClasses number of classes; read only for {@link #MULTICLASS}
   * @throws StagecraftException if a multiclass task has fewer than 2 classes
   */
  public int numOutputs(int numClasses) {
    if (this != MULTICLASS) {
      return 1;
    }
    if (numClasses < 2) {
      throw StagecraftException.user(
          "Invalid number of classes: %d (expected at least 2 for a multiclass task)", numClasses);
    }
    return numClasses;
  }

  public boolean isClassification() {
    return this != REGRESSION;
  }

  /** Lower-case name, as in messages and manifests. */
  public String label() {
    return name().toLowerCase(Locale.ROOT);
  }
}
