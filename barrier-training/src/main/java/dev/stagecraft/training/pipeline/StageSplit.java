package dev.stagecraft.training.pipeline;

import dev.stagecraft.training.model.ModelSpec;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Which consecutive layers each pipeline stage holds. A layer is one linear map with what follows it (activation,
 * dropout): {@code hidden.size() + 1} layers for an MLP.
 *
 * <p>The automatic split balances the stages' cost, where a layer's cost is its share of the model's parameters
 * (what a stage must hold, with its optimizer state) plus its share of the FLOPs per row (what a stage must compute:
 * about {@code 6 · in · out} forward and backward), and picks the contiguous split whose most expensive stage is
 * cheapest: the pipeline runs at the pace of that stage.
 */
public record StageSplit(List<Stage> stages) implements Serializable {
  /** One layer: its widths, parameters and FLOPs per row (forward and backward). */
  public record Layer(int index, int inputs, int outputs) implements Serializable {
    public long parameters() {
      return (long) inputs * outputs + outputs;
    }

    /**
     * Multiply-adds times two: the forward product, the weights' gradient and the input's gradient, each
     * {@code inputs × outputs}; the first layer's input is the features, whose gradient nobody needs, so it has one
     * product fewer.
     */
    public long flopsPerRow() {
      return (index == 0 ? 4L : 6L) * inputs * outputs;
    }
  }

  /** A stage: layers {@code first..last}, inclusive. */
  public record Stage(int index, int first, int last, long parameters, long flopsPerRow) implements Serializable {
    public List<Integer> layers() {
      List<Integer> l = new ArrayList<>();
      for (int i = first; i <= last; i++) {
        l.add(i);
      }
      return l;
    }
  }

  public StageSplit {
    stages = List.copyOf(stages);
  }

  /** The number of layers a spec's network has (1 for logistic and linear models). */
  public static int numLayers(ModelSpec spec) {
    return spec.type() == ModelSpec.Type.MLP ? spec.hidden().size() + 1 : 1;
  }

  /** The layers of a spec's network for {@code numFeatures} inputs and {@code numOutputs} outputs. */
  public static List<Layer> layers(ModelSpec spec, int numFeatures, int numOutputs) {
    List<Layer> layers = new ArrayList<>();
    int in = numFeatures;
    if (spec.type() == ModelSpec.Type.MLP) {
      for (int width : spec.hidden()) {
        layers.add(new Layer(layers.size(), in, width));
        in = width;
      }
    }
    layers.add(new Layer(layers.size(), in, numOutputs));
    return layers;
  }

  /** The balanced split of {@code layers} into {@code stages} contiguous, non-empty stages. */
  public static StageSplit balanced(List<Layer> layers, int stages) {
    int n = layers.size();
    if (stages < 1 || stages > n) {
      throw new IllegalArgumentException(stages + " stages for " + n + " layers (expected 1 to " + n + ")");
    }
    double totalParams = layers.stream().mapToLong(Layer::parameters).sum();
    double totalFlops = layers.stream().mapToLong(Layer::flopsPerRow).sum();
    double[] prefix = new double[n + 1];
    for (int i = 0; i < n; i++) {
      prefix[i + 1] = prefix[i] + layers.get(i).parameters() / totalParams + layers.get(i).flopsPerRow() / totalFlops;
    }
    // best[p][i]: the smallest possible cost of the most expensive stage when the first i layers form p stages.
    double[][] best = new double[stages + 1][n + 1];
    int[][] cut = new int[stages + 1][n + 1];
    for (double[] row : best) {
      java.util.Arrays.fill(row, Double.POSITIVE_INFINITY);
    }
    best[0][0] = 0;
    for (int p = 1; p <= stages; p++) {
      for (int i = p; i <= n; i++) {
        for (int j = p - 1; j < i; j++) {
          double cost = Math.max(best[p - 1][j], prefix[i] - prefix[j]);
          if (cost < best[p][i] - 1e-12) {
            best[p][i] = cost;
            cut[p][i] = j;
          }
        }
      }
    }
    int[] starts = new int[stages + 1];
    starts[stages] = n;
    for (int p = stages, i = n; p > 0; p--) {
      starts[p - 1] = cut[p][i];
      i = cut[p][i];
    }
    List<List<Integer>> given = new ArrayList<>();
    for (int p = 0; p < stages; p++) {
      List<Integer> l = new ArrayList<>();
      for (int i = starts[p]; i < starts[p + 1]; i++) {
        l.add(i);
      }
      given.add(l);
    }
    return given(layers, given);
  }

  /**
   * The split a workflow gives ({@code stages: [[0, 1], [2, 3]]}).
   *
   * @throws IllegalArgumentException unless the lists are non-empty runs of consecutive layers that cover every
   *     layer once, in order
   */
  public static StageSplit given(List<Layer> layers, List<List<Integer>> stages) {
    List<Stage> result = new ArrayList<>();
    int next = 0;
    for (int s = 0; s < stages.size(); s++) {
      List<Integer> l = stages.get(s);
      if (l.isEmpty()) {
        throw new IllegalArgumentException("stage " + s + " has no layers (expected each stage to hold at least one)");
      }
      for (int i = 0; i < l.size(); i++) {
        if (l.get(i) != next) {
          throw new IllegalArgumentException("stage " + s + " holds layers " + l + " (expected consecutive layers "
              + "in order, starting with layer " + next + ", covering 0.." + (layers.size() - 1) + " once)");
        }
        next++;
        if (next > layers.size()) {
          throw new IllegalArgumentException("stage " + s + " holds layer " + l.get(i) + " but the model has "
              + layers.size() + " layers (0.." + (layers.size() - 1) + ")");
        }
      }
      long params = 0;
      long flops = 0;
      for (int i : l) {
        params += layers.get(i).parameters();
        flops += layers.get(i).flopsPerRow();
      }
      result.add(new Stage(s, l.get(0), l.get(l.size() - 1), params, flops));
    }
    if (next != layers.size()) {
      throw new IllegalArgumentException("the stages hold layers 0.." + (next - 1) + " but the model has "
          + layers.size() + " (expected every layer in one stage)");
    }
    return new StageSplit(result);
  }

  public Stage stage(int index) {
    return stages.get(index);
  }

  public int size() {
    return stages.size();
  }

  /** The split for a step's details: each stage's layers, parameters, FLOPs per row and share of the whole. */
  public List<Map<String, Object>> describe() {
    long params = stages.stream().mapToLong(Stage::parameters).sum();
    long flops = stages.stream().mapToLong(Stage::flopsPerRow).sum();
    List<Map<String, Object>> out = new ArrayList<>();
    for (Stage s : stages) {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("stage", s.index());
      m.put("layers", s.layers());
      m.put("parameters", s.parameters());
      m.put("parameter_share", Math.round(1000.0 * s.parameters() / params) / 1000.0);
      m.put("flops_per_row", s.flopsPerRow());
      m.put("flops_share", Math.round(1000.0 * s.flopsPerRow() / flops) / 1000.0);
      out.add(m);
    }
    return out;
  }
}
