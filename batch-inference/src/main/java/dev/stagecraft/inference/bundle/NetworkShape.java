package dev.stagecraft.inference.bundle;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.spi.StagecraftException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The network a bundle's manifest describes (its {@code model} section), as much as the forward pass needs: the
 * layers, the activation, and the task that fixes the output head. Training settings (optimizer, epochs…) are the
 * trainer's business and are ignored here.
 *
 * <p>Layers: for each hidden width, linear + activation; then a linear output layer of {@code numOutputs} units
 * (1, or the number of classes for {@code multiclass}). Dropout is off at inference.
 *
 * @param hidden hidden layer widths, in order (empty for {@code logistic} and {@code linear})
 * @param activation {@code relu}, {@code tanh} or {@code sigmoid}
 * @param task {@code binary}, {@code multiclass} or {@code regression}
 */
public record NetworkShape(List<Integer> hidden, String activation, String task, int numFeatures, int numOutputs)
    implements java.io.Serializable {
  public static final List<String> ACTIVATIONS = List.of("relu", "tanh", "sigmoid");
  public static final List<String> TASKS = List.of("binary", "multiclass", "regression");

  public NetworkShape {
    hidden = List.copyOf(requireNonNull(hidden, "hidden is null"));
    requireNonNull(activation, "activation is null");
    requireNonNull(task, "task is null");
    if (!ACTIVATIONS.contains(activation)) {
      throw new IllegalArgumentException("Invalid activation: '" + activation + "' (expected one of: "
          + String.join(", ", ACTIVATIONS) + ")");
    }
    if (!TASKS.contains(task)) {
      throw new IllegalArgumentException("Invalid task: '" + task + "' (expected one of: " + String.join(", ", TASKS)
          + ")");
    }
    if (numFeatures < 1 || numOutputs < 1 || hidden.stream().anyMatch(w -> w < 1)) {
      throw new IllegalArgumentException("Invalid network: " + numFeatures + " features, hidden " + hidden + ", "
          + numOutputs + " outputs (expected positive sizes)");
    }
  }

  /**
   * Reads the manifest's {@code model} map ({@code hidden}, {@code activation}, {@code task}, {@code num_features},
   * {@code num_classes}).
   *
   * @param where names the bundle in messages
   * @throws StagecraftException (user) naming the bundle and the key that is missing or invalid
   */
  public static NetworkShape fromManifest(Map<String, Object> model, String where) {
    try {
      List<Integer> hidden = new ArrayList<>();
      Object h = model.get("hidden");
      if (h instanceof List<?> list) {
        for (Object o : list) {
          hidden.add(((Number) o).intValue());
        }
      }
      String task = string(model, "task", null);
      if (task == null) {
        throw new IllegalArgumentException("no 'task' (expected one of: " + String.join(", ", TASKS) + ")");
      }
      Object nf = model.get("num_features");
      if (!(nf instanceof Number)) {
        throw new IllegalArgumentException("no 'num_features' (expected the number of features)");
      }
      int numOutputs = 1;
      if (task.equals("multiclass")) {
        Object k = model.get("num_classes");
        numOutputs = k instanceof Number n ? n.intValue() : 0;
      }
      return new NetworkShape(hidden, string(model, "activation", "relu"), task, ((Number) nf).intValue(),
          numOutputs);
    } catch (IllegalArgumentException | ClassCastException e) {
      throw StagecraftException.user("Invalid model bundle %s: model section: %s", where, e.getMessage());
    }
  }

  /** Layer widths from input to output: {@code [numFeatures, hidden…, numOutputs]}. */
  public List<Integer> widths() {
    List<Integer> w = new ArrayList<>();
    w.add(numFeatures);
    w.addAll(hidden);
    w.add(numOutputs);
    return w;
  }

  /** Length of the flat parameter vector: per layer, {@code outputs × inputs} weights then {@code outputs} biases. */
  public long numParameters() {
    List<Integer> w = widths();
    long n = 0;
    for (int i = 0; i + 1 < w.size(); i++) {
      n += (long) w.get(i) * w.get(i + 1) + w.get(i + 1);
    }
    return n;
  }

  private static String string(Map<String, Object> model, String key, String dflt) {
    Object v = model.get(key);
    return v == null ? dflt : v.toString().toLowerCase(Locale.ROOT);
  }
}
