package dev.stagecraft.training.model;

import static java.util.Objects.requireNonNull;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Block;
import ai.djl.nn.Parameter;
import ai.djl.nn.SequentialBlock;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.Dropout;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.ParameterStore;
import ai.djl.training.initializer.Initializer;
import ai.djl.util.Pair;
import dev.stagecraft.inference.bundle.ParameterFile;
import dev.stagecraft.inference.runtime.DjlEnvironment;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A DJL (PyTorch) network whose parameters are exposed as one flat {@code float[]}: DJL runs forward and backward,
 * and everything else (optimizer, all-reduce, checkpoints) works on flat vectors.
 *
 * <p>One training step: {@code loss = computeGradients(x, y, rows)}; {@code g = gradients()}; the caller averages
 * {@code g} across workers; {@code optimizer.update(params, g)}; {@code setParameters(params)}.
 *
 * <p>Networks: {@code logistic} and {@code linear} are one linear layer; {@code mlp} is, for each hidden width,
 * linear + activation (+ dropout), then the output layer. The output layer has {@link Task#numOutputs} units.
 * Losses are means over the batch: binary cross-entropy on the logit, softmax cross-entropy, or mean squared error.
 * To combine shards of unequal size into the gradient of the global batch mean, scale each worker's gradient by its
 * share of the rows before summing.
 *
 * <p>Parameter layout: layer by layer, the weight ({@code [outputs × inputs]}, row-major) then the bias.
 * Initialisation depends only on the spec's seed: Glorot-uniform weights drawn from a {@link SplittableRandom},
 * zero biases, on any device.
 *
 * <p>Not thread-safe: a model is used by one thread at a time. Distinct models may train concurrently in one JVM
 * (this class does not use DJL's JVM-wide {@code GradientCollector}, of which only one may be open at a time).
 */
public final class FlatModel implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(FlatModel.class);

  /**
   * Dropout draws from PyTorch's process-wide generator; models that use dropout reseed it and run their forward
   * pass under this lock, so each step's masks depend only on (seed, random stream, step) even with several
   * models training in one JVM.
   */
  private static final Object DROPOUT_RNG_LOCK = new Object();

  /** Every element of an array, as the target of an in-place copy ({@link #setParameters}); never modified. */
  private static final NDIndex WHOLE = new NDIndex("...");

  private final ModelSpec spec;
  private final Task task;
  private final int numFeatures;
  private final int numOutputs;
  private final Device device;
  private final NDManager manager;
  private final Block block;
  private final ParameterStore parameterStore;
  private final PtNDArray[] arrays;
  private final int[] offsets;
  private final int[] sizes;
  /** Direct, native-order staging buffers each parameter array is copied from. */
  private final ByteBuffer[] staging;
  private final int numParameters;
  private final float[] gradients;
  private final boolean hasDropout;
  /** The seed gradient of the scalar loss for backward, made once. */
  private final PtNDArray lossSeed;

  private ByteBuffer featureStaging = emptyDirect();
  private ByteBuffer labelStaging = emptyDirect();
  private long trainingSteps;
  private long randomStream;
  private boolean closed;

  private FlatModel(ModelSpec spec, Task task, int numFeatures, int numOutputs, Device device) {
    this.spec = spec;
    this.task = task;
    this.numFeatures = numFeatures;
    this.numOutputs = numOutputs;
    this.device = device;
    this.hasDropout = spec.dropout() > 0;
    this.manager = DjlEnvironment.pytorch().newBaseManager(device);
    try {
      this.block = buildBlock(spec, numOutputs);
      // Values are overwritten below; zeros avoid drawing from PyTorch's global generator.
      block.setInitializer(Initializer.ZEROS, Parameter.Type.WEIGHT);
      block.setInitializer(Initializer.ZEROS, Parameter.Type.BIAS);
      block.initialize(manager, DataType.FLOAT32, new Shape(1, numFeatures));
      this.parameterStore = new ParameterStore(manager, false);

      List<PtNDArray> list = new ArrayList<>();
      List<Parameter.Type> types = new ArrayList<>();
      for (Pair<String, Parameter> entry : block.getParameters()) {
        list.add((PtNDArray) entry.getValue().getArray());
        types.add(entry.getValue().getType());
      }
      int count = list.size();
      this.arrays = list.toArray(new PtNDArray[0]);
      this.offsets = new int[count];
      this.sizes = new int[count];
      this.staging = new ByteBuffer[count];
      long total = 0;
      for (int i = 0; i < count; i++) {
        offsets[i] = (int) total;
        sizes[i] = Math.toIntExact(arrays[i].size());
        total += sizes[i];
        if (total > Integer.MAX_VALUE) {
          throw StagecraftException.user(
              "Invalid model: more than %d parameters (%d features, hidden %s)",
              Integer.MAX_VALUE, numFeatures, spec.hidden());
        }
        staging[i] = ByteBuffer.allocateDirect(sizes[i] * Float.BYTES).order(ByteOrder.nativeOrder());
      }
      this.numParameters = (int) total;
      this.gradients = new float[numParameters];
      this.lossSeed = (PtNDArray) manager.ones(new Shape());
      setParameters(initialParameters(types));
    } catch (RuntimeException e) {
      manager.close();
      throw e;
    }
  }

  /**
   * Builds the network a spec describes, with its initial parameters, on {@code device}.
   *
   * @param numFeatures input width, at least 1
   * @param numClasses number of classes; read only for {@link Task#MULTICLASS}
   * @throws StagecraftException if the spec does not fit the task, or the sizes are invalid
   */
  public static FlatModel create(ModelSpec spec, Task task, int numFeatures, int numClasses, Device device) {
    requireNonNull(spec, "spec is null");
    requireNonNull(task, "task is null");
    requireNonNull(device, "device is null");
    spec.checkTask(task);
    if (numFeatures < 1) {
      throw StagecraftException.user("Invalid number of features: %d (expected at least 1)", numFeatures);
    }
    return new FlatModel(spec, task, numFeatures, task.numOutputs(numClasses), device);
  }

  private static Block buildBlock(ModelSpec spec, int numOutputs) {
    SequentialBlock net = new SequentialBlock();
    for (int width : spec.hidden()) {
      net.add(Linear.builder().setUnits(width).build());
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
    net.add(Linear.builder().setUnits(numOutputs).build());
    return net;
  }

  private float[] initialParameters(List<Parameter.Type> types) {
    float[] values = new float[numParameters];
    SplittableRandom random = new SplittableRandom(spec.seed());
    for (int i = 0; i < arrays.length; i++) {
      if (types.get(i) != Parameter.Type.WEIGHT) {
        continue; // biases start at zero
      }
      long[] shape = arrays[i].getShape().getShape();
      double fanOut = shape[0];
      double fanIn = shape.length > 1 ? shape[1] : 1;
      double limit = Math.sqrt(6.0 / (fanIn + fanOut));
      for (int j = 0; j < sizes[i]; j++) {
        values[offsets[i] + j] = (float) ((random.nextDouble() * 2 - 1) * limit);
      }
    }
    return values;
  }

  public ModelSpec spec() {
    return spec;
  }

  public Task task() {
    return task;
  }

  public int numFeatures() {
    return numFeatures;
  }

  /** Width of the output layer: 1, or the number of classes for {@link Task#MULTICLASS}. */
  public int numOutputs() {
    return numOutputs;
  }

  public Device device() {
    return device;
  }

  /** Length of the flat parameter and gradient vectors. */
  public int numParameters() {
    return numParameters;
  }

  /** A copy of the current parameters, in the layout described above. */
  public float[] parameters() {
    checkOpen();
    float[] values = new float[numParameters];
    for (int i = 0; i < arrays.length; i++) {
      copyOut(arrays[i], values, offsets[i], sizes[i]);
    }
    return values;
  }

  /**
   * Replaces all parameters.
   *
   * @throws IllegalArgumentException if {@code values.length != numParameters()}
   */
  public void setParameters(float[] values) {
    checkOpen();
    if (values.length != numParameters) {
      throw new IllegalArgumentException(
          "Invalid parameter vector length: " + values.length + " (expected " + numParameters + ")");
    }
    // A copy into each parameter tensor (index_put_ over the whole tensor, a leaf that requires grad, so with grad
    // mode off). Not NDArray.set(Buffer): DJL's native set() opens PyTorch's deprecated AutoNonVariableTypeMode
    // guard, and libtorch prints a deprecation warning to the process's stderr the first time (once per JVM: every
    // executor, every step run as its own application); libtorch without Python offers no switch to silence it.
    boolean gradMode = JniUtils.isGradMode();
    JniUtils.setGradMode(false);
    try (NDManager scratch = manager.newSubManager()) {
      for (int i = 0; i < arrays.length; i++) {
        ByteBuffer buffer = staging[i];
        buffer.clear();
        buffer.asFloatBuffer().put(values, offsets[i], sizes[i]);
        arrays[i].set(WHOLE, scratch.create(buffer, arrays[i].getShape(), DataType.FLOAT32));
      }
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  /**
   * Runs forward and backward on one batch and keeps the gradient of the mean loss for {@link #gradients()}.
   *
   * <p>Reads {@code rows × numFeatures()} floats from {@code features} and {@code rows} floats from {@code labels},
   * starting at their positions, without moving them.
   *
   * @param features row-major {@code [rows × numFeatures]}
   * @param labels one per row: 0 or 1 ({@link Task#BINARY}), a class index ({@link Task#MULTICLASS}), a value
   *     ({@link Task#REGRESSION})
   * @return the mean loss over the batch
   * @throws IllegalArgumentException if a buffer holds too few floats or a label is invalid for the task
   */
  public float computeGradients(FloatBuffer features, FloatBuffer labels, int rows) {
    checkOpen();
    checkBatch(features, labels, rows);
    boolean gradMode = JniUtils.isGradMode();
    boolean backwardDone = false;
    boolean gradientsRead = false;
    try (NDManager step = manager.newSubManager()) {
      NDArray x = stage(step, features, rows * numFeatures, new Shape(rows, numFeatures), true);
      NDArray y = stage(step, labels, rows, labelShape(rows), false);
      // Grad mode is thread-local in PyTorch: a Spark task thread starts with whatever the thread did last.
      JniUtils.setGradMode(true);
      NDArray loss = loss(forward(x, true), y, rows);
      JniUtils.backward((PtNDArray) loss, lossSeed, false, false);
      backwardDone = true;
      float value = scalar(loss);
      readGradients();
      gradientsRead = true;
      trainingSteps++;
      return value;
    } finally {
      JniUtils.setGradMode(gradMode);
      if (backwardDone && !gradientsRead) {
        try {
          zeroGradients();
        } catch (RuntimeException e) {
          LOG.warn("Cannot reset gradients after a failed step: {}", e.toString());
        }
      }
    }
  }

  /**
   * The gradient from the last {@link #computeGradients} call. The array is the model's own and is overwritten by
   * the next call; the caller may change it in place (for example, all-reduce it).
   */
  public float[] gradients() {
    return gradients;
  }

  /**
   * The mean loss on a batch, without dropout and without touching the gradients (for validation metrics).
   *
   * @throws IllegalArgumentException as {@link #computeGradients}
   */
  public float computeLoss(FloatBuffer features, FloatBuffer labels, int rows) {
    checkOpen();
    checkBatch(features, labels, rows);
    boolean gradMode = JniUtils.isGradMode();
    try (NDManager step = manager.newSubManager()) {
      JniUtils.setGradMode(false);
      NDArray x = stage(step, features, rows * numFeatures, new Shape(rows, numFeatures), true);
      NDArray y = stage(step, labels, rows, labelShape(rows), false);
      return scalar(loss(forward(x, false), y, rows));
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  /**
   * Predictions for {@code rows} rows (dropout off): p(1) per row for {@link Task#BINARY}, {@code rows × classes}
   * probabilities (row-major) for {@link Task#MULTICLASS}, the value per row for {@link Task#REGRESSION}.
   *
   * @throws IllegalArgumentException if {@code features} holds fewer than {@code rows × numFeatures()} floats
   */
  public float[] predict(FloatBuffer features, int rows) {
    checkOpen();
    checkFeatures(features, rows);
    boolean gradMode = JniUtils.isGradMode();
    try (NDManager step = manager.newSubManager()) {
      JniUtils.setGradMode(false);
      NDArray x = stage(step, features, rows * numFeatures, new Shape(rows, numFeatures), true);
      NDArray out = forward(x, false);
      NDArray result =
          switch (task) {
            case BINARY -> ai.djl.nn.Activation.sigmoid(out.reshape(rows));
            case MULTICLASS -> out.softmax(1);
            case REGRESSION -> out.reshape(rows);
          };
      return result.toFloatArray();
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  /** Writes the parameters in {@link ParameterFile}'s format; flushes but does not close {@code out}. */
  public void saveParameters(OutputStream out) throws IOException {
    ParameterFile.write(parameters(), out);
  }

  /**
   * Reads parameters written by {@link #saveParameters} (or {@link ParameterFile#write}); does not close {@code in}.
   *
   * @throws IOException if the stream is not a valid parameter file
   * @throws IllegalArgumentException if it holds a vector of another length than this model's
   */
  public void loadParameters(InputStream in) throws IOException {
    float[] values = ParameterFile.read(in);
    if (values.length != numParameters) {
      throw new IllegalArgumentException(
          "Cannot load parameters: the file has "
              + values.length
              + " values (expected "
              + numParameters
              + " for this model)");
    }
    setParameters(values);
  }

  /** Training steps run so far; with the seed and random stream it determines each step's dropout masks. */
  public long trainingSteps() {
    return trainingSteps;
  }

  /** Sets the step counter, when resuming from a checkpoint, so dropout continues as it would have. */
  public void setTrainingSteps(long steps) {
    if (steps < 0) {
      throw new IllegalArgumentException("Invalid training step count: " + steps + " (expected >= 0)");
    }
    this.trainingSteps = steps;
  }

  /** Separates this model's dropout masks from other workers' with the same seed (use the worker's rank). */
  public void setRandomStream(long stream) {
    this.randomStream = stream;
  }

  @Override
  public void close() {
    if (!closed) {
      closed = true;
      manager.close();
    }
  }

  private NDArray forward(NDArray x, boolean training) {
    if (training && hasDropout) {
      synchronized (DROPOUT_RNG_LOCK) {
        JniUtils.setSeed(mix(mix(spec.seed() ^ mix(randomStream)) + trainingSteps));
        return block.forward(parameterStore, new NDList(x), true).singletonOrThrow();
      }
    }
    return block.forward(parameterStore, new NDList(x), training).singletonOrThrow();
  }

  /** Labels as the output's shape for one-output tasks ({@code [rows, 1]}: no reshape), else {@code [rows]}. */
  private Shape labelShape(int rows) {
    return task == Task.MULTICLASS ? new Shape(rows) : new Shape(rows, 1);
  }

  /**
   * The mean loss as a scalar NDArray. Every op here is a JNI call and a tensor allocation, which at small batch
   * sizes cost more than the arithmetic, so the formulas use as few ops as they can.
   */
  private NDArray loss(NDArray out, NDArray y, int rows) {
    return switch (task) {
      // log(1 + e^z) − z·y: binary cross-entropy of sigmoid(z), stable for any z (softplus is).
      case BINARY -> ai.djl.nn.Activation.softPlus(out).sub(out.mul(y)).mean();
      case MULTICLASS -> {
        NDArray oneHot = y.toType(DataType.INT64, false).oneHot(numOutputs);
        yield out.logSoftmax(1).mul(oneHot).sum().div(-rows);
      }
      case REGRESSION -> {
        NDArray diff = out.sub(y);
        yield diff.mul(diff).mean();
      }
    };
  }

  /** One float from a one-element array ({@code getFloat()} would first copy it through an indexer). */
  private static float scalar(NDArray array) {
    return array.toByteBuffer(true).order(ByteOrder.nativeOrder()).getFloat(0);
  }

  /** Copies {@code count} floats from {@code source} into a reused direct buffer and wraps it as one NDArray. */
  private NDArray stage(NDManager step, FloatBuffer source, int count, Shape shape, boolean isFeatures) {
    ByteBuffer buffer = isFeatures ? featureStaging : labelStaging;
    if (buffer.capacity() < count * Float.BYTES) {
      buffer = ByteBuffer.allocateDirect(count * Float.BYTES).order(ByteOrder.nativeOrder());
      if (isFeatures) {
        featureStaging = buffer;
      } else {
        labelStaging = buffer;
      }
    }
    buffer.clear();
    buffer.limit(count * Float.BYTES);
    FloatBuffer src = source.duplicate();
    src.limit(src.position() + count);
    buffer.asFloatBuffer().put(src);
    return step.create(buffer, shape, DataType.FLOAT32);
  }

  private void readGradients() {
    for (int i = 0; i < arrays.length; i++) {
      try (NDArray grad = arrays[i].getGradient()) {
        copyOut(grad, gradients, offsets[i], sizes[i]);
      }
      JniUtils.zeroGrad(arrays[i]);
    }
  }

  private void zeroGradients() {
    for (PtNDArray array : arrays) {
      JniUtils.zeroGrad(array);
    }
  }

  private static void copyOut(NDArray array, float[] dst, int offset, int length) {
    // A direct view of CPU memory (no intermediate copy); DJL copies GPU tensors to the host first.
    array.toByteBuffer(true).order(ByteOrder.nativeOrder()).asFloatBuffer().get(dst, offset, length);
  }

  private void checkBatch(FloatBuffer features, FloatBuffer labels, int rows) {
    checkFeatures(features, rows);
    requireNonNull(labels, "labels is null");
    if (labels.remaining() < rows) {
      throw new IllegalArgumentException(
          "Invalid labels buffer: " + labels.remaining() + " floats remaining (expected " + rows + ")");
    }
    int base = labels.position();
    for (int r = 0; r < rows; r++) {
      float label = labels.get(base + r);
      boolean valid =
          switch (task) {
            case BINARY -> label == 0f || label == 1f;
            case MULTICLASS -> label >= 0 && label < numOutputs && label == (int) label;
            case REGRESSION -> Float.isFinite(label);
          };
      if (!valid) {
        throw new IllegalArgumentException(
            String.format(
                "Invalid label in row %d of the batch: %s (expected %s)", r, label, expectedLabels()));
      }
    }
  }

  private String expectedLabels() {
    return switch (task) {
      case BINARY -> "0 or 1";
      case MULTICLASS -> "a class index in 0.." + (numOutputs - 1);
      case REGRESSION -> "a finite number";
    };
  }

  private void checkFeatures(FloatBuffer features, int rows) {
    requireNonNull(features, "features is null");
    if (rows < 1) {
      throw new IllegalArgumentException("Invalid batch: " + rows + " rows (expected at least 1)");
    }
    long needed = (long) rows * numFeatures;
    if (needed > Integer.MAX_VALUE / Float.BYTES) {
      throw new IllegalArgumentException(
          "Invalid batch: " + rows + " rows × " + numFeatures + " features exceeds 2 GB; split it");
    }
    if (features.remaining() < needed) {
      throw new IllegalArgumentException(
          "Invalid features buffer: "
              + features.remaining()
              + " floats remaining (expected "
              + rows
              + " rows × "
              + numFeatures
              + " features = "
              + needed
              + ")");
    }
  }

  private void checkOpen() {
    if (closed) {
      throw new IllegalStateException("Cannot use a closed model");
    }
  }

  private static ByteBuffer emptyDirect() {
    return ByteBuffer.allocateDirect(0).order(ByteOrder.nativeOrder());
  }

  /** SplitMix64's finaliser: spreads (seed, stream, step) into well-mixed generator seeds. */
  private static long mix(long z) {
    z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
    z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
    return z ^ (z >>> 31);
  }
}
