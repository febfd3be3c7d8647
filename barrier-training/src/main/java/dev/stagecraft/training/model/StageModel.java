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
import dev.stagecraft.inference.runtime.DjlEnvironment;
import dev.stagecraft.spi.StagecraftException;
import java.nio.FloatBuffer;
import java.util.ArrayDeque;
import java.util.Map;
import java.util.TreeMap;

/**
 * One stage of a pipeline-parallel network: the consecutive layers {@code firstLayer..lastLayer} of the network a
 * {@link ModelSpec} describes (numbered as in {@link #numLayers}), with the compute side of GPipe and 1F1B
 * schedules. The transport between stages and the schedule are the caller's.
 *
 * <p>Per micro-batch: stages other than the last call {@link #forward} and send the returned activations to the
 * next stage; the last stage calls {@link #forwardLoss}. Then, in any order the schedule chooses, the last stage
 * calls {@link #backward} with {@code lossScale} = the micro-batch's rows and the others with the activation
 * gradient received from the next stage; each non-first stage sends the returned input gradient to the previous
 * stage. Each micro-batch's graph lives in its own sub-manager from its forward to its backward, so any number may
 * be held at once. Parameter gradients accumulate over micro-batches (as sums over rows, given that seed) until
 * {@link #zeroGradients()}; divided by the step's total rows, they are the gradient of the mean loss.
 *
 * <p>One optimizer step: forward and backward every micro-batch; {@code g = gradients()}; scale {@code g} (and
 * all-reduce it across data-parallel replicas of the stage); {@code optimizer.update(params, g)};
 * {@code setParameters(params)}; {@link #zeroGradients()}; {@link #endStep()}.
 *
 * <p>Equivalence with {@link FlatModel}: the parameter layout is FlatModel's restricted to the stage's layers (so
 * the stages' vectors concatenated in order are the whole model's vector) and the initial parameters are the
 * matching slice of FlatModel's. Without dropout, the stages' gradients over a batch split into micro-batches equal
 * FlatModel's on the whole batch up to float rounding. With dropout they do not: each stage draws its masks per
 * micro-batch from (seed, random stream, step, first layer, micro-batch), not per batch as FlatModel does.
 *
 * <p>Memory accounting counts the activation tensors a micro-batch keeps for its backward: its input (on stages
 * other than the first; the first stage's features are not counted), and each layer's outputs of
 * {@code rows × width} floats: for a hidden layer the linear output, the activation output and, with dropout, the
 * dropout output; for the output layer its linear output. The loss's small intermediates ({@code rows × outputs}),
 * the labels and dropout masks are not counted.
 *
 * <p>Not thread-safe: a stage is used by one thread at a time. Distinct models may run concurrently in one JVM.
 */
public final class StageModel implements AutoCloseable {

  /** A forwarded micro-batch awaiting its backward: everything it allocated is in {@code manager}. */
  private record MicroBatch(
      NDManager manager, NDArray input, NDArray result, int rows, long bytes, Staging inputs, Staging labels) {}

  private final ModelSpec spec;
  private final Task task;
  private final Device device;
  private final int[] widths;
  private final int firstLayer;
  private final int lastLayer;
  private final boolean isFirst;
  private final boolean isLast;
  private final boolean hasDropout;
  private final long activationFloatsPerRow;
  private final NDManager manager;
  private final Block block;
  private final ParameterStore parameterStore;
  private final FlatParameters parameters;
  private final float[] gradients;

  /** By micro-batch id, sorted so that messages list them in order. */
  private final Map<Integer, MicroBatch> held = new TreeMap<>();
  /** Staging buffers of freed micro-batches, reused: a held micro-batch's input aliases its own buffer. */
  private final ArrayDeque<Staging> spareStaging = new ArrayDeque<>();
  /** Used only within one backward call, so one buffer serves all micro-batches. */
  private final Staging gradientStaging = new Staging();

  private long heldBytes;
  private long peakBytes;
  private int peakHeld;
  private long trainingSteps;
  private long randomStream;
  private boolean closed;

  private StageModel(ModelSpec spec, Task task, Device device, int[] widths, int firstLayer, int lastLayer) {
    this.spec = spec;
    this.task = task;
    this.device = device;
    this.widths = widths;
    this.firstLayer = firstLayer;
    this.lastLayer = lastLayer;
    this.isFirst = firstLayer == 0;
    this.isLast = lastLayer == widths.length - 2;
    this.hasDropout = spec.dropout() > 0;
    this.activationFloatsPerRow = Layers.activationFloatsPerRow(widths, firstLayer, lastLayer, hasDropout);
    this.manager = DjlEnvironment.pytorch().newBaseManager(device);
    try {
      this.block = Layers.initializedBlock(spec, widths, firstLayer, lastLayer, manager);
      this.parameterStore = new ParameterStore(manager, false);
      this.parameters =
          new FlatParameters(block, manager, Layers.parameterCount(widths, firstLayer, lastLayer));
      this.gradients = new float[parameters.size()];
      parameters.set(Layers.initialParameters(spec.seed(), widths, firstLayer, lastLayer));
    } catch (RuntimeException e) {
      manager.close();
      throw e;
    }
  }

  /**
   * Builds layers {@code firstLayer..lastLayer} (inclusive) of the network a spec describes, with their initial
   * parameters, on {@code device}. Only this stage's parameters are made.
   *
   * @param numFeatures input width of the whole network, at least 1
   * @param numClasses number of classes; read only for {@link Task#MULTICLASS}
   * @throws IllegalArgumentException if the layer range is empty or outside {@code 0..numLayers(spec) - 1}
   * @throws StagecraftException as {@link FlatModel#create}
   */
  public static StageModel create(
      ModelSpec spec, Task task, int numFeatures, int numClasses, Device device, int firstLayer, int lastLayer) {
    requireNonNull(spec, "spec is null");
    requireNonNull(task, "task is null");
    requireNonNull(device, "device is null");
    int layers = numLayers(spec);
    if (firstLayer < 0 || lastLayer >= layers || firstLayer > lastLayer) {
      throw new IllegalArgumentException(
          String.format(
              "Invalid layer range %d..%d: the model has %d layers (expected 0 <= first <= last <= %d)",
              firstLayer, lastLayer, layers, layers - 1));
    }
    int[] widths = Layers.widths(spec, task, numFeatures, numClasses);
    return new StageModel(spec, task, device, widths, firstLayer, lastLayer);
  }

  /** Layers of the network a spec describes: one per hidden width, then the output layer. */
  public static int numLayers(ModelSpec spec) {
    return Layers.count(requireNonNull(spec, "spec is null"));
  }

  public ModelSpec spec() {
    return spec;
  }

  public Task task() {
    return task;
  }

  public Device device() {
    return device;
  }

  public int firstLayer() {
    return firstLayer;
  }

  public int lastLayer() {
    return lastLayer;
  }

  /** Whether the stage holds layer 0 and so reads features. */
  public boolean isFirst() {
    return isFirst;
  }

  /** Whether the stage holds the output layer and so computes the loss. */
  public boolean isLast() {
    return isLast;
  }

  /** Columns of the stage's input: the number of features on the first stage, else the previous layer's width. */
  public int inputWidth() {
    return widths[firstLayer];
  }

  /** Columns of the stage's output: its last layer's width ({@link Task#numOutputs} on the last stage). */
  public int outputWidth() {
    return widths[lastLayer + 1];
  }

  /** Length of the stage's flat parameter and gradient vectors. */
  public int numParameters() {
    return parameters.size();
  }

  /** Bytes of the stage's parameters ({@code numParameters() × 4}); the gradients take as much again. */
  public long parameterBytes() {
    return (long) parameters.size() * Float.BYTES;
  }

  /** A copy of the stage's parameters: FlatModel's layout restricted to the stage's layers. */
  public float[] parameters() {
    checkOpen();
    return parameters.get();
  }

  /**
   * Replaces the stage's parameters.
   *
   * @throws IllegalArgumentException if {@code values.length != numParameters()}
   * @throws IllegalStateException while micro-batches are held: their backward needs the parameters they were
   *     forwarded with
   */
  public void setParameters(float[] values) {
    checkOpen();
    if (!held.isEmpty()) {
      throw new IllegalStateException(
          "Cannot set parameters while micro-batches " + held.keySet() + " are held (run their backward first)");
    }
    parameters.set(values);
  }

  /**
   * Forward of one micro-batch on a stage other than the last, recording the graph for its {@link #backward}.
   * Reads {@code rows × inputWidth()} floats from {@code input}'s position without moving it.
   *
   * @param microBatch the caller's id for the micro-batch, unique among those held
   * @param input row-major {@code [rows × inputWidth]}: features on the first stage, else the previous stage's
   *     output
   * @return the output activations, row-major {@code [rows × outputWidth]}, in a new array
   * @throws IllegalStateException on the last stage (use {@link #forwardLoss}), or if {@code microBatch} is held
   * @throws IllegalArgumentException if {@code input} holds too few floats
   */
  public float[] forward(int microBatch, FloatBuffer input, int rows) {
    checkOpen();
    if (isLast) {
      throw new IllegalStateException(
          "Cannot run forward on the last stage (layers " + firstLayer + ".." + lastLayer + "): use forwardLoss");
    }
    checkNotHeld(microBatch);
    checkInput(input, rows);
    Batches.checkMatrixSize(rows, outputWidth(), "outputs");
    MicroBatch m = begin(microBatch, input, null, rows);
    float[] out = new float[rows * outputWidth()];
    FlatParameters.copyOut(m.result(), out, 0, out.length);
    return out;
  }

  /**
   * Forward of one micro-batch on the last stage, with FlatModel's loss, recording the graph for its
   * {@link #backward}. Reads {@code rows × inputWidth()} floats from {@code input} and {@code rows} labels from
   * {@code labels}, from their positions, without moving them.
   *
   * @param labels one per row, as for {@link FlatModel#computeGradients}
   * @return the mean loss over the micro-batch's rows
   * @throws IllegalStateException on stages other than the last (use {@link #forward}), or if {@code microBatch}
   *     is held
   * @throws IllegalArgumentException if a buffer holds too few floats or a label is invalid for the task
   */
  public float forwardLoss(int microBatch, FloatBuffer input, FloatBuffer labels, int rows) {
    checkOpen();
    if (!isLast) {
      throw new IllegalStateException(
          "Cannot compute the loss on layers " + firstLayer + ".." + lastLayer + ": the output layer ("
              + (widths.length - 2) + ") is on the last stage; use forward");
    }
    checkNotHeld(microBatch);
    checkInput(input, rows);
    Batches.checkLabels(task, outputWidth(), labels, rows);
    return Batches.scalar(begin(microBatch, input, labels, rows).result());
  }

  /**
   * Backward of a held micro-batch: adds its parameter gradients to the accumulated ones and frees its tensors.
   *
   * <p>If backward itself fails in PyTorch, the micro-batch is freed all the same and the accumulated gradients
   * are unreliable until {@link #zeroGradients()}. A refused argument leaves the micro-batch held.
   *
   * @param outputGradient on stages other than the last: the gradient w.r.t. this stage's output, row-major
   *     {@code [rows × outputWidth]} from its position (not moved), as received from the next stage; ignored (may
   *     be null) on the last stage
   * @param lossScale on the last stage: the seed of the mean loss's gradient, normally the micro-batch's rows so
   *     that gradients are sums over rows; ignored on other stages
   * @return the gradient w.r.t. the stage's input, row-major {@code [rows × inputWidth]} in a new array, for the
   *     previous stage; null on the first stage
   * @throws IllegalStateException if {@code microBatch} is not held
   * @throws IllegalArgumentException if {@code outputGradient} holds too few floats or {@code lossScale} is not
   *     finite
   */
  public float[] backward(int microBatch, FloatBuffer outputGradient, float lossScale) {
    checkOpen();
    MicroBatch m = held.get(microBatch);
    if (m == null) {
      throw new IllegalStateException(
          "Cannot run backward of micro-batch " + microBatch + ": it is not held (never forwarded, or its backward"
              + " already ran); held: " + held.keySet());
    }
    if (isLast) {
      if (!Float.isFinite(lossScale)) {
        throw new IllegalArgumentException("Invalid loss scale: " + lossScale + " (expected a finite number)");
      }
    } else {
      Batches.checkMatrix(outputGradient, "output gradient", m.rows(), outputWidth(), "outputs");
    }
    try {
      NDArray seed =
          isLast
              ? m.manager().create(lossScale)
              : gradientStaging.wrap(
                  m.manager(), outputGradient, m.rows() * outputWidth(), new Shape(m.rows(), outputWidth()));
      JniUtils.backward((PtNDArray) m.result(), (PtNDArray) seed, false, false);
      if (isFirst) {
        return null;
      }
      float[] inputGradient = new float[m.rows() * inputWidth()];
      FlatParameters.copyOut(m.input().getGradient(), inputGradient, 0, inputGradient.length);
      return inputGradient;
    } finally {
      free(microBatch);
    }
  }

  /**
   * The parameter gradients accumulated since the last {@link #zeroGradients()} (zeros before any backward), read
   * from the tensors on each call. The array is the model's own and is overwritten by the next call; the caller may
   * change it in place (for example, scale or all-reduce it) without affecting the accumulation.
   */
  public float[] gradients() {
    checkOpen();
    parameters.readGradients(gradients);
    return gradients;
  }

  /** Resets the accumulated parameter gradients, for the next optimizer step. */
  public void zeroGradients() {
    checkOpen();
    parameters.zeroGradients();
  }

  /**
   * Frees every held micro-batch without its backward (after a failed step); the accumulated gradients stay.
   *
   * @return how many micro-batches were freed
   */
  public int discardMicroBatches() {
    int count = held.size();
    for (Integer id : held.keySet().toArray(new Integer[0])) {
      free(id);
    }
    return count;
  }

  /** Micro-batches forwarded and not yet backwarded. */
  public int heldMicroBatches() {
    return held.size();
  }

  /** The most micro-batches held at once since creation or {@link #resetPeak()}. */
  public int peakHeldMicroBatches() {
    return peakHeld;
  }

  /** Bytes of the activation tensors the held micro-batches keep (see the class description). */
  public long heldActivationBytes() {
    return heldBytes;
  }

  /** The most {@link #heldActivationBytes()} since creation or {@link #resetPeak()}. */
  public long peakActivationBytes() {
    return peakBytes;
  }

  /** Bytes of activation tensors one micro-batch of {@code rows} rows keeps until its backward. */
  public long activationBytes(int rows) {
    return rows * activationFloatsPerRow * Float.BYTES;
  }

  /** Sets the peaks to the current values, to measure the next step's peak alone. */
  public void resetPeak() {
    peakHeld = held.size();
    peakBytes = heldBytes;
  }

  /** Optimizer steps ended so far; with the seed, random stream and micro-batch it determines dropout masks. */
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

  /** Separates this stage's dropout masks from other replicas' with the same seed (use the replica's rank). */
  public void setRandomStream(long stream) {
    this.randomStream = stream;
  }

  /**
   * Ends an optimizer step: advances the step counter, so the next step's dropout masks differ.
   *
   * @throws IllegalStateException if micro-batches are still held
   */
  public void endStep() {
    checkOpen();
    if (!held.isEmpty()) {
      throw new IllegalStateException(
          "Cannot end the step: micro-batches " + held.keySet() + " are still held (run their backward first)");
    }
    trainingSteps++;
  }

  @Override
  public void close() {
    if (!closed) {
      closed = true;
      held.clear();
      manager.close();
    }
  }

  /** Stages the input (and labels), runs the layers with the graph recorded, and holds the micro-batch. */
  private MicroBatch begin(int microBatch, FloatBuffer input, FloatBuffer labels, int rows) {
    NDManager sub = manager.newSubManager();
    Staging inputs = takeStaging();
    Staging labelStaging = labels == null ? null : takeStaging();
    boolean gradMode = JniUtils.isGradMode();
    try {
      NDArray x = inputs.wrap(sub, input, rows * inputWidth(), new Shape(rows, inputWidth()));
      if (!isFirst) {
        x.setRequiresGradient(true); // the previous stage needs the input's gradient
      }
      // Grad mode is thread-local in PyTorch: a Spark task thread starts with whatever the thread did last.
      JniUtils.setGradMode(true);
      NDArray result = Layers.forward(block, parameterStore, x, true, hasDropout, dropoutSeed(microBatch));
      if (labels != null) {
        NDArray y = labelStaging.wrap(sub, labels, rows, Batches.labelShape(task, rows));
        result = Batches.meanLoss(task, outputWidth(), result, y, rows);
      }
      MicroBatch m = new MicroBatch(sub, x, result, rows, activationBytes(rows), inputs, labelStaging);
      held.put(microBatch, m);
      heldBytes += m.bytes();
      peakBytes = Math.max(peakBytes, heldBytes);
      peakHeld = Math.max(peakHeld, held.size());
      return m;
    } catch (RuntimeException e) {
      sub.close();
      spareStaging.push(inputs);
      if (labelStaging != null) {
        spareStaging.push(labelStaging);
      }
      throw e;
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  private void free(int microBatch) {
    MicroBatch m = held.remove(microBatch);
    heldBytes -= m.bytes();
    m.manager().close();
    // Only now, with the tensors that alias them closed, may the buffers be refilled.
    spareStaging.push(m.inputs());
    if (m.labels() != null) {
      spareStaging.push(m.labels());
    }
  }

  private Staging takeStaging() {
    Staging staging = spareStaging.poll();
    return staging != null ? staging : new Staging();
  }

  /** Masks differ per step, replica, stage and micro-batch; they cannot match FlatModel's per-batch masks. */
  private long dropoutSeed(int microBatch) {
    long step = Layers.dropoutSeed(spec.seed(), randomStream, trainingSteps);
    return Layers.mix(step ^ Layers.mix(((long) firstLayer << 32) | (microBatch & 0xffffffffL)));
  }

  private void checkInput(FloatBuffer input, int rows) {
    if (isFirst) {
      Batches.checkMatrix(input, "features", rows, inputWidth(), "features");
    } else {
      Batches.checkMatrix(input, "input", rows, inputWidth(), "inputs");
    }
  }

  private void checkNotHeld(int microBatch) {
    if (held.containsKey(microBatch)) {
      throw new IllegalStateException(
          "Cannot forward micro-batch " + microBatch + ": it is already held (its backward has not run yet)");
    }
  }

  private void checkOpen() {
    if (closed) {
      throw new IllegalStateException("Cannot use a closed model");
    }
  }
}
