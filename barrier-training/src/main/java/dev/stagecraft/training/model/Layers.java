package dev.stagecraft.training.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Block;
import ai.djl.nn.Parameter;
import ai.djl.nn.SequentialBlock;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.Dropout;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.ParameterStore;
import ai.djl.training.initializer.Initializer;
import dev.stagecraft.spi.StagecraftException;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The network a {@link ModelSpec} describes, as numbered layers, shared by {@link FlatModel} (all layers) and
 * {@link StageModel} (a consecutive range).
 *
 * <p>Layer {@code i < k} of an MLP with {@code k} hidden widths is linear + activation (+ dropout); layer {@code k}
 * is the output layer (linear only). {@code logistic} and {@code linear} are a single output layer. Layer {@code i}
 * maps {@code widths[i]} inputs to {@code widths[i + 1]} outputs.
 */
final class Layers {

  /**
   * Dropout draws from PyTorch's process-wide generator; models that use dropout reseed it and run their forward
   * pass under this lock, so each pass's masks depend only on the seed it was given, even with several models
   * training in one JVM.
   */
  private static final Object DROPOUT_RNG_LOCK = new Object();

  private Layers() {}

  /** Number of layers: hidden layers plus the output layer. */
  static int count(ModelSpec spec) {
    return spec.hidden().size() + 1;
  }

  /**
   * Checks that the spec fits the task and the sizes are valid, and returns the layer widths: {@code widths[0]} is
   * the number of features, {@code widths[count]} the number of outputs.
   *
   * @throws StagecraftException if the spec does not fit the task, the sizes are invalid, or the network has more
   *     than {@link Integer#MAX_VALUE} parameters
   */
  static int[] widths(ModelSpec spec, Task task, int numFeatures, int numClasses) {
    spec.checkTask(task);
    if (numFeatures < 1) {
      throw StagecraftException.user("Invalid number of features: %d (expected at least 1)", numFeatures);
    }
    int outputs = task.numOutputs(numClasses);
    List<Integer> hidden = spec.hidden();
    int[] widths = new int[hidden.size() + 2];
    widths[0] = numFeatures;
    for (int i = 0; i < hidden.size(); i++) {
      widths[i + 1] = hidden.get(i);
    }
    widths[widths.length - 1] = outputs;
    if (parameterCount(widths, 0, widths.length - 2) > Integer.MAX_VALUE) {
      throw StagecraftException.user(
          "Invalid model: more than %d parameters (%d features, hidden %s)",
          Integer.MAX_VALUE, numFeatures, hidden);
    }
    return widths;
  }

  /** Parameters of layers {@code first..last}: each layer's weight ({@code out × in}) and bias ({@code out}). */
  static long parameterCount(int[] widths, int first, int last) {
    long total = 0;
    for (int i = first; i <= last; i++) {
      total += (long) widths[i + 1] * (widths[i] + 1L);
    }
    return total;
  }

  /** Whether layer {@code i} is a hidden layer (linear + activation), not the output layer. */
  static boolean isHidden(int[] widths, int layer) {
    return layer < widths.length - 2;
  }

  /**
   * Floats per row that layers {@code first..last} keep for backward: the input unless {@code first} is 0, then
   * per hidden layer its linear and activation outputs (and dropout output), per output layer its linear output.
   */
  static long activationFloatsPerRow(int[] widths, int first, int last, boolean hasDropout) {
    long floats = first == 0 ? 0 : widths[first];
    for (int i = first; i <= last; i++) {
      floats += (long) widths[i + 1] * (isHidden(widths, i) ? (hasDropout ? 3 : 2) : 1);
    }
    return floats;
  }

  /** The DJL block of layers {@code first..last}; parameters are listed layer by layer, weight then bias. */
  static SequentialBlock block(ModelSpec spec, int[] widths, int first, int last) {
    SequentialBlock net = new SequentialBlock();
    for (int i = first; i <= last; i++) {
      net.add(Linear.builder().setUnits(widths[i + 1]).build());
      if (!isHidden(widths, i)) {
        continue;
      }
      net.add(
          switch (spec.activation()) {
            case RELU -> ai.djl.nn.Activation.reluBlock();
            case TANH -> ai.djl.nn.Activation.tanhBlock();
            case SIGMOID -> ai.djl.nn.Activation.sigmoidBlock();
          });
      if (spec.dropout() > 0) {
        net.add(Dropout.builder().optRate((float) spec.dropout()).build());
      }
    }
    return net;
  }

  /**
   * {@link #block}, its parameters allocated in {@code manager} (zeros: the caller sets {@link #initialParameters},
   * and zero initialisers avoid drawing from PyTorch's global generator).
   */
  static SequentialBlock initializedBlock(ModelSpec spec, int[] widths, int first, int last, NDManager manager) {
    SequentialBlock net = block(spec, widths, first, last);
    net.setInitializer(Initializer.ZEROS, Parameter.Type.WEIGHT);
    net.setInitializer(Initializer.ZEROS, Parameter.Type.BIAS);
    net.initialize(manager, DataType.FLOAT32, new Shape(1, widths[first]));
    return net;
  }

  /**
   * Initial parameters of layers {@code first..last} in the flat layout: Glorot-uniform weights, zero biases. All
   * weights of the whole network are drawn from one {@link SplittableRandom} seeded with {@code seed}, layer by
   * layer; a range that starts later skips the earlier layers' draws (without materialising them), so the ranges'
   * vectors concatenated equal the whole network's.
   */
  static float[] initialParameters(long seed, int[] widths, int first, int last) {
    SplittableRandom random = new SplittableRandom(seed);
    for (int i = 0; i < first; i++) {
      long draws = (long) widths[i + 1] * widths[i];
      for (long j = 0; j < draws; j++) {
        random.nextDouble();
      }
    }
    float[] values = new float[Math.toIntExact(parameterCount(widths, first, last))];
    int offset = 0;
    for (int i = first; i <= last; i++) {
      int fanIn = widths[i];
      int fanOut = widths[i + 1];
      double limit = Math.sqrt(6.0 / ((double) fanIn + fanOut));
      int weights = fanOut * fanIn;
      for (int j = 0; j < weights; j++) {
        values[offset + j] = (float) ((random.nextDouble() * 2 - 1) * limit);
      }
      offset += weights + fanOut; // biases stay zero
    }
    return values;
  }

  /**
   * Runs {@code block} on {@code x}. With dropout in training, PyTorch's generator is seeded with
   * {@code dropoutSeed} under a JVM-wide lock, so the masks depend on that seed only.
   */
  static NDArray forward(
      Block block, ParameterStore store, NDArray x, boolean training, boolean hasDropout, long dropoutSeed) {
    if (training && hasDropout) {
      synchronized (DROPOUT_RNG_LOCK) {
        JniUtils.setSeed(dropoutSeed);
        return block.forward(store, new NDList(x), true).singletonOrThrow();
      }
    }
    return block.forward(store, new NDList(x), training).singletonOrThrow();
  }

  /** The generator seed of one training step's dropout masks, from (seed, random stream, step). */
  static long dropoutSeed(long seed, long randomStream, long step) {
    return mix(mix(seed ^ mix(randomStream)) + step);
  }

  /** SplitMix64's finaliser: spreads (seed, stream, step) into well-mixed generator seeds. */
  static long mix(long z) {
    z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
    z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
    return z ^ (z >>> 31);
  }
}
