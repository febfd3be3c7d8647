package dev.stagecraft.inference.model;

import static java.util.Objects.requireNonNull;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.pytorch.jni.JniUtils;
import dev.stagecraft.inference.bundle.NetworkShape;
import dev.stagecraft.inference.bundle.ParameterFile;
import dev.stagecraft.inference.runtime.DjlEnvironment;
import dev.stagecraft.inference.score.Scorer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The network of a Stagecraft bundle rebuilt for the forward pass with DJL on PyTorch: per layer, a weight
 * {@code [inputs × outputs]} (the bundle's {@code [outputs × inputs]} transposed once at load) and a bias, as
 * read-only tensors on one device. {@code y = act(x·Wᵀ + b)} per hidden layer, the same arithmetic as DJL's
 * {@code Linear} block the trainer uses, then the task's head: {@code binary} → sigmoid (p of class 1),
 * {@code multiclass} → softmax, {@code regression} → the value.
 *
 * <p>Thread-safe: the parameters are never written after construction, and each {@link #score} call allocates its
 * tensors in its own sub-manager with autograd off for the calling thread.
 */
public final class BundleNetwork implements Scorer {
  private final NetworkShape shape;
  private final Device device;
  private final NDManager manager;
  private final List<NDArray> weights = new ArrayList<>();
  private final List<NDArray> biases = new ArrayList<>();
  private final List<Output> outputs;

  /**
   * @param parameters the flat parameter vector ({@link ParameterFile}'s layout: per layer the weight row-major
   *     {@code [outputs × inputs]}, then the bias)
   * @throws IllegalArgumentException if the vector's length does not fit the shape
   */
  public BundleNetwork(NetworkShape shape, float[] parameters, Device device) {
    this.shape = requireNonNull(shape, "shape is null");
    this.device = requireNonNull(device, "device is null");
    if (parameters.length != shape.numParameters()) {
      throw new IllegalArgumentException("Invalid parameter vector: " + parameters.length + " values (expected "
          + shape.numParameters() + " for " + shape.numFeatures() + " features, hidden " + shape.hidden() + ", "
          + shape.numOutputs() + " output(s))");
    }
    this.manager = DjlEnvironment.pytorch().newBaseManager(device);
    try {
      List<Integer> w = shape.widths();
      int offset = 0;
      for (int i = 0; i + 1 < w.size(); i++) {
        int in = w.get(i);
        int out = w.get(i + 1);
        NDArray weight = manager.create(direct(parameters, offset, in * out), new Shape(out, in), DataType.FLOAT32);
        offset += in * out;
        // Transposed and made contiguous once, so every batch is one plain matrix product.
        NDArray transposed = weight.transpose().duplicate();
        weight.close();
        weights.add(transposed);
        NDArray bias = manager.create(direct(parameters, offset, out), new Shape(out), DataType.FLOAT32);
        biases.add(bias.duplicate()); // own storage, not the staging buffer's
        bias.close();
        offset += out;
      }
    } catch (RuntimeException e) {
      manager.close();
      throw e;
    }
    this.outputs = switch (shape.task()) {
      case "binary" -> List.of(new Output("probability", 1));
      case "multiclass" -> List.of(new Output("probability", shape.numOutputs()));
      default -> List.of(new Output("prediction", 1));
    };
  }

  public NetworkShape shape() {
    return shape;
  }

  @Override
  public int numFeatures() {
    return shape.numFeatures();
  }

  @Override
  public List<Output> outputs() {
    return outputs;
  }

  @Override
  public String device() {
    return device.toString();
  }

  @Override
  public float[][] score(ByteBuffer features, int rows) {
    if (rows == 0) {
      return new float[][] {new float[0]};
    }
    boolean gradMode = JniUtils.isGradMode();
    try (NDManager batch = manager.newSubManager()) {
      // Grad mode is per thread in PyTorch: a Spark task thread keeps whatever it was last set to.
      JniUtils.setGradMode(false);
      // A direct buffer becomes the tensor's storage on the CPU (torch::from_blob): no copy.
      NDArray x = batch.create(features, new Shape(rows, shape.numFeatures()), DataType.FLOAT32);
      if (!device.equals(Device.cpu())) {
        x = x.toDevice(device, false);
      }
      int last = weights.size() - 1;
      for (int i = 0; i < last; i++) {
        x = activation(x.matMul(weights.get(i)).addi(biases.get(i)));
      }
      NDArray out = x.matMul(weights.get(last)).addi(biases.get(last));
      NDArray result = switch (shape.task()) {
        case "binary" -> Activation.sigmoid(out.reshape(rows));
        case "multiclass" -> out.softmax(1);
        default -> out.reshape(rows);
      };
      return new float[][] {result.toFloatArray()};
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  private NDArray activation(NDArray x) {
    return switch (shape.activation()) {
      case "tanh" -> Activation.tanh(x);
      case "sigmoid" -> Activation.sigmoid(x);
      default -> Activation.relu(x);
    };
  }

  @Override
  public void close() {
    manager.close();
  }

  private static ByteBuffer direct(float[] values, int offset, int count) {
    ByteBuffer b = ByteBuffer.allocateDirect(count * Float.BYTES).order(ByteOrder.nativeOrder());
    b.asFloatBuffer().put(values, offset, count);
    return b;
  }
}
