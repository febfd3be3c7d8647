package dev.stagecraft.training.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/**
 * A reusable direct, native-order buffer that floats are copied into to become one tensor: a single copy from any
 * {@link FloatBuffer} (heap, direct, either byte order), and no allocation once the buffer is large enough.
 *
 * <p>On the CPU, DJL's PyTorch engine wraps a direct buffer without copying it: the tensor {@link #wrap} returns
 * ALIASES this buffer. The buffer must not be wrapped again while that tensor is in use, including by a recorded
 * graph awaiting its backward pass (a linear layer keeps its input for the weight gradient).
 */
final class Staging {
  private ByteBuffer buffer = ByteBuffer.allocateDirect(0).order(ByteOrder.nativeOrder());

  /** Copies {@code count} floats from {@code source}'s position (without moving it) and wraps them as a tensor. */
  NDArray wrap(NDManager manager, FloatBuffer source, int count, Shape shape) {
    int bytes = count * Float.BYTES;
    if (buffer.capacity() < bytes) {
      buffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder());
    }
    buffer.clear();
    buffer.limit(bytes);
    FloatBuffer src = source.duplicate();
    src.limit(src.position() + count);
    buffer.asFloatBuffer().put(src);
    return manager.create(buffer, shape, DataType.FLOAT32);
  }
}
