package dev.stagecraft.training.model;

import static java.util.Objects.requireNonNull;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/** Batch checks and the loss, shared by {@link FlatModel} and {@link StageModel}. */
final class Batches {

  private Batches() {}

  /**
   * Checks that {@code buffer} holds a row-major {@code rows × width} matrix from its position.
   *
   * @param name the buffer in messages ({@code features})
   * @param unit a column in messages ({@code features})
   * @throws IllegalArgumentException if {@code rows < 1}, the matrix exceeds 2 GB, or the buffer is short
   */
  static void checkMatrix(FloatBuffer buffer, String name, int rows, int width, String unit) {
    requireNonNull(buffer, name + " is null");
    if (rows < 1) {
      throw new IllegalArgumentException("Invalid batch: " + rows + " rows (expected at least 1)");
    }
    checkMatrixSize(rows, width, unit);
    long needed = (long) rows * width;
    if (buffer.remaining() < needed) {
      throw new IllegalArgumentException(
          "Invalid "
              + name
              + " buffer: "
              + buffer.remaining()
              + " floats remaining (expected "
              + rows
              + " rows × "
              + width
              + " "
              + unit
              + " = "
              + needed
              + ")");
    }
  }

  /** @throws IllegalArgumentException if a {@code rows × width} float matrix exceeds 2 GB */
  static void checkMatrixSize(int rows, int width, String unit) {
    if ((long) rows * width > Integer.MAX_VALUE / Float.BYTES) {
      throw new IllegalArgumentException(
          "Invalid batch: " + rows + " rows × " + width + " " + unit + " exceeds 2 GB; split it");
    }
  }

  /**
   * Checks {@code rows} labels from the buffer's position: 0 or 1 ({@link Task#BINARY}), a class index below
   * {@code numOutputs} ({@link Task#MULTICLASS}), a finite value ({@link Task#REGRESSION}).
   *
   * @throws IllegalArgumentException naming the row and the value
   */
  static void checkLabels(Task task, int numOutputs, FloatBuffer labels, int rows) {
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
                "Invalid label in row %d of the batch: %s (expected %s)", r, label, expected(task, numOutputs)));
      }
    }
  }

  private static String expected(Task task, int numOutputs) {
    return switch (task) {
      case BINARY -> "0 or 1";
      case MULTICLASS -> "a class index in 0.." + (numOutputs - 1);
      case REGRESSION -> "a finite number";
    };
  }

  /** Labels as the output's shape for one-output tasks ({@code [rows, 1]}: no reshape), else {@code [rows]}. */
  static Shape labelShape(Task task, int rows) {
    return task == Task.MULTICLASS ? new Shape(rows) : new Shape(rows, 1);
  }

  /**
   * The mean loss over the rows as a scalar NDArray. Every op here is a JNI call and a tensor allocation, which at
   * small batch sizes cost more than the arithmetic, so the formulas use as few ops as they can.
   */
  static NDArray meanLoss(Task task, int numOutputs, NDArray out, NDArray y, int rows) {
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
  static float scalar(NDArray array) {
    return array.toByteBuffer(true).order(ByteOrder.nativeOrder()).getFloat(0);
  }
}
