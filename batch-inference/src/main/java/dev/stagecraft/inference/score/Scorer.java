package dev.stagecraft.inference.score;

import static java.util.Objects.requireNonNull;

import java.nio.ByteBuffer;
import java.util.List;

/**
 * A loaded model that scores batches of rows: a DJL (PyTorch) network rebuilt from a Stagecraft bundle, or an ONNX
 * Runtime session.
 *
 * <p>Thread safety: {@link #score} may be called by several threads at once (concurrent Spark tasks of one executor
 * share one loaded model through {@link dev.stagecraft.inference.cache.ModelCache}); {@link #close} is called once,
 * when no thread uses the scorer any more.
 */
public interface Scorer extends AutoCloseable {

  /** One output tensor: its name and how many floats it has per row. */
  record Output(String name, int width) {
    public Output {
      requireNonNull(name, "name is null");
      if (width < 1) {
        throw new IllegalArgumentException("Invalid output width: " + width + " (expected at least 1)");
      }
    }
  }

  /** Input width: floats per row. */
  int numFeatures();

  /** The outputs {@link #score} returns, in order. */
  List<Output> outputs();

  /** Where the model runs, e.g. {@code cpu()} or {@code gpu(0)}. */
  String device();

  /**
   * Scores {@code rows} rows.
   *
   * @param features a direct, native-order buffer of {@code rows × numFeatures()} floats, row-major (typically an
   *     Arrow vector's data buffer); handed to the runtime without copying, and not modified. The caller keeps it
   *     alive until this method returns.
   * @return per output, {@code rows × width} floats, row-major
   */
  float[][] score(ByteBuffer features, int rows);

  @Override
  void close();
}
