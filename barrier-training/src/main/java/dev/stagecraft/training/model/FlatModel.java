package dev.stagecraft.training.model;

import static java.util.Objects.requireNonNull;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Block;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.ParameterStore;
import dev.stagecraft.inference.bundle.ParameterFile;
import dev.stagecraft.inference.runtime.DjlEnvironment;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.FloatBuffer;
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
 * {@link StageModel} holds a consecutive range of these layers, for pipeline parallelism, in the same layout.
 *
 * <p>Not thread-safe: a model is used by one thread at a time. Distinct models may train concurrently in one JVM
 * (this class does not use DJL's JVM-wide {@code GradientCollector}, of which only one may be open at a time).
 */
public final class FlatModel implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(FlatModel.class);

  private final ModelSpec spec;
  private final Task task;
  private final int numFeatures;
  private final int numOutputs;
  private final Device device;
  private final NDManager manager;
  private final Block block;
  private final ParameterStore parameterStore;
  private final FlatParameters parameters;
  private final float[] gradients;
  private final boolean hasDropout;
  /** The seed gradient of the scalar loss for backward, made once. */
  private final PtNDArray lossSeed;

  private final Staging featureStaging = new Staging();
  private final Staging labelStaging = new Staging();
  private long trainingSteps;
  private long randomStream;
  private boolean closed;

  private FlatModel(ModelSpec spec, Task task, int[] widths, Device device) {
    this.spec = spec;
    this.task = task;
    this.numFeatures = widths[0];
    this.numOutputs = widths[widths.length - 1];
    this.device = device;
    this.hasDropout = spec.dropout() > 0;
    int last = widths.length - 2;
    this.manager = DjlEnvironment.pytorch().newBaseManager(device);
    try {
      this.block = Layers.initializedBlock(spec, widths, 0, last, manager);
      this.parameterStore = new ParameterStore(manager, false);
      this.parameters = new FlatParameters(block, manager, Layers.parameterCount(widths, 0, last));
      this.gradients = new float[parameters.size()];
      this.lossSeed = (PtNDArray) manager.ones(new Shape());
      setParameters(Layers.initialParameters(spec.seed(), widths, 0, last));
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
    return new FlatModel(spec, task, Layers.widths(spec, task, numFeatures, numClasses), device);
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
    return parameters.size();
  }

  /** A copy of the current parameters, in the layout described above. */
  public float[] parameters() {
    checkOpen();
    return parameters.get();
  }

  /**
   * Replaces all parameters.
   *
   * @throws IllegalArgumentException if {@code values.length != numParameters()}
   */
  public void setParameters(float[] values) {
    checkOpen();
    parameters.set(values);
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
      NDArray x = featureStaging.wrap(step, features, rows * numFeatures, new Shape(rows, numFeatures));
      NDArray y = labelStaging.wrap(step, labels, rows, Batches.labelShape(task, rows));
      // Grad mode is thread-local in PyTorch: a Spark task thread starts with whatever the thread did last.
      JniUtils.setGradMode(true);
      NDArray loss = Batches.meanLoss(task, numOutputs, forward(x, true), y, rows);
      JniUtils.backward((PtNDArray) loss, lossSeed, false, false);
      backwardDone = true;
      float value = Batches.scalar(loss);
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
      NDArray x = featureStaging.wrap(step, features, rows * numFeatures, new Shape(rows, numFeatures));
      NDArray y = labelStaging.wrap(step, labels, rows, Batches.labelShape(task, rows));
      return Batches.scalar(Batches.meanLoss(task, numOutputs, forward(x, false), y, rows));
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
      NDArray x = featureStaging.wrap(step, features, rows * numFeatures, new Shape(rows, numFeatures));
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
    if (values.length != parameters.size()) {
      throw new IllegalArgumentException(
          "Cannot load parameters: the file has "
              + values.length
              + " values (expected "
              + parameters.size()
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
    long dropoutSeed = Layers.dropoutSeed(spec.seed(), randomStream, trainingSteps);
    return Layers.forward(block, parameterStore, x, training, hasDropout, dropoutSeed);
  }

  private void readGradients() {
    parameters.readGradients(gradients);
    parameters.zeroGradients();
  }

  private void zeroGradients() {
    parameters.zeroGradients();
  }

  private void checkBatch(FloatBuffer features, FloatBuffer labels, int rows) {
    checkFeatures(features, rows);
    Batches.checkLabels(task, numOutputs, labels, rows);
  }

  private void checkFeatures(FloatBuffer features, int rows) {
    Batches.checkMatrix(features, "features", rows, numFeatures, "features");
  }

  private void checkOpen() {
    if (closed) {
      throw new IllegalStateException("Cannot use a closed model");
    }
  }
}
