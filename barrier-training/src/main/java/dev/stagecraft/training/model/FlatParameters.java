package dev.stagecraft.training.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.nn.Block;
import ai.djl.nn.Parameter;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.util.Pair;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * An initialised block's parameter tensors seen as one flat {@code float[]}, in the order the block lists them
 * (for {@link Layers#block}: layer by layer, the weight {@code [outputs × inputs]} row-major, then the bias).
 */
final class FlatParameters {

  /** Every element of an array, as the target of an in-place copy ({@link #set}); never modified. */
  private static final NDIndex WHOLE = new NDIndex("...");

  private final NDManager manager;
  private final PtNDArray[] arrays;
  private final int[] offsets;
  private final int[] sizes;
  /** Direct, native-order staging buffers each parameter array is copied from. */
  private final ByteBuffer[] staging;
  private final int size;

  /**
   * @param manager the manager that owns the block's parameters; scratch tensors are made in its sub-managers
   * @param expectedSize the count the layout promises; a mismatch is a bug, not a user error
   */
  FlatParameters(Block block, NDManager manager, long expectedSize) {
    this.manager = manager;
    List<PtNDArray> list = new ArrayList<>();
    for (Pair<String, Parameter> entry : block.getParameters()) {
      list.add((PtNDArray) entry.getValue().getArray());
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
      staging[i] = ByteBuffer.allocateDirect(sizes[i] * Float.BYTES).order(ByteOrder.nativeOrder());
    }
    if (total != expectedSize) {
      throw new IllegalStateException("The block has " + total + " parameters, not the " + expectedSize + " expected");
    }
    this.size = (int) total;
  }

  int size() {
    return size;
  }

  /** A copy of the current values. */
  float[] get() {
    float[] values = new float[size];
    for (int i = 0; i < arrays.length; i++) {
      copyOut(arrays[i], values, offsets[i], sizes[i]);
    }
    return values;
  }

  /**
   * Replaces all values.
   *
   * @throws IllegalArgumentException if {@code values.length != size()}
   */
  void set(float[] values) {
    if (values.length != size) {
      throw new IllegalArgumentException(
          "Invalid parameter vector length: " + values.length + " (expected " + size + ")");
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

  /** Copies the gradients PyTorch accumulated in the tensors into {@code dst} (zeros where none was computed). */
  void readGradients(float[] dst) {
    for (int i = 0; i < arrays.length; i++) {
      try (NDArray grad = arrays[i].getGradient()) {
        copyOut(grad, dst, offsets[i], sizes[i]);
      }
    }
  }

  /** Zeroes the tensors' accumulated gradients (those not computed yet stay undefined). */
  void zeroGradients() {
    for (PtNDArray array : arrays) {
      JniUtils.zeroGrad(array);
    }
  }

  static void copyOut(NDArray array, float[] dst, int offset, int length) {
    // A direct view of CPU memory (no intermediate copy); DJL copies GPU tensors to the host first.
    array.toByteBuffer(true).order(ByteOrder.nativeOrder()).asFloatBuffer().get(dst, offset, length);
  }
}
