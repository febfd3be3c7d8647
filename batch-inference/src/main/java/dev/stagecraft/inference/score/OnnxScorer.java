package dev.stagecraft.inference.score;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.stagecraft.spi.StagecraftException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * An ONNX model in an ONNX Runtime session (CPU provider). The model must take one float tensor {@code [N, k]} (N
 * may be dynamic) and give float tensors {@code [N]} or {@code [N, w]}; each output becomes one output of this scorer,
 * named as in the model.
 *
 * <p>Thread-safe: ONNX Runtime allows concurrent {@code run} calls on one session.
 */
public final class OnnxScorer implements Scorer {
  private final String where;
  private final OrtEnvironment env;
  private final OrtSession session;
  private final String inputName;
  private final int numFeatures;
  private final List<Output> outputs;

  /**
   * @param where the model's path, for messages
   * @param declaredFeatures how many feature columns the step declares; used when the model's input width is dynamic
   * @param threads intra-op threads of the session (the task's CPUs)
   * @throws StagecraftException (user) naming the model if it cannot be loaded or its inputs/outputs do not fit
   */
  public OnnxScorer(String where, byte[] model, int declaredFeatures, int threads) {
    this.where = where;
    this.env = OrtEnvironment.getEnvironment();
    try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
      options.setIntraOpNumThreads(Math.max(1, threads));
      this.session = env.createSession(model, options);
    } catch (OrtException e) {
      throw StagecraftException.user("Invalid ONNX model %s: %s", where, e.getMessage());
    }
    try {
      Map<String, NodeInfo> inputs = session.getInputInfo();
      if (inputs.size() != 1) {
        throw StagecraftException.user("Invalid ONNX model %s: %d inputs %s (expected one float tensor [N, k])",
            where, inputs.size(), inputs.keySet());
      }
      NodeInfo input = inputs.values().iterator().next();
      this.inputName = input.getName();
      long[] shape = tensorShape(input);
      if (shape.length != 2 || ((TensorInfo) input.getInfo()).type != OnnxJavaType.FLOAT) {
        throw StagecraftException.user("Invalid ONNX model %s: input '%s' is %s (expected one float tensor [N, k])",
            where, inputName, input.getInfo());
      }
      this.numFeatures = shape[1] > 0 ? (int) shape[1] : declaredFeatures;
      if (numFeatures < 1) {
        throw StagecraftException.user("Invalid ONNX model %s: input '%s' has a dynamic width (declare the feature "
            + "columns with 'features')", where, inputName);
      }
      // Output widths can be dynamic in the metadata: one row of zeros tells them.
      List<String> names = new ArrayList<>(session.getOutputNames());
      float[][] probe = run(ByteBuffer.allocateDirect(numFeatures * Float.BYTES).order(ByteOrder.nativeOrder()), 1,
          names, null);
      List<Output> outs = new ArrayList<>();
      for (int i = 0; i < names.size(); i++) {
        outs.add(new Output(names.get(i), probe[i].length));
      }
      this.outputs = List.copyOf(outs);
    } catch (RuntimeException e) {
      close();
      throw e;
    } catch (OrtException e) {
      close();
      throw StagecraftException.user("Invalid ONNX model %s: %s", where, e.getMessage());
    }
  }

  private static long[] tensorShape(NodeInfo node) {
    return node.getInfo() instanceof TensorInfo t ? t.getShape() : new long[0];
  }

  @Override
  public int numFeatures() {
    return numFeatures;
  }

  @Override
  public List<Output> outputs() {
    return outputs;
  }

  @Override
  public String device() {
    return "cpu()";
  }

  public String inputName() {
    return inputName;
  }

  @Override
  public float[][] score(ByteBuffer features, int rows) {
    try {
      return run(features, rows, null, outputs);
    } catch (OrtException e) {
      throw StagecraftException.external(e, "Cannot score with ONNX model %s: %s", where, e.getMessage());
    }
  }

  private float[][] run(ByteBuffer features, int rows, List<String> names, List<Output> expected) throws OrtException {
    FloatBuffer floats = features.order(ByteOrder.nativeOrder()).asFloatBuffer();
    // A direct buffer is used in place by OnnxTensor (no copy); the caller keeps it alive for the call.
    try (OnnxTensor x = OnnxTensor.createTensor(env, floats, new long[] {rows, numFeatures});
        OrtSession.Result result = session.run(Map.of(inputName, x))) {
      int n = expected != null ? expected.size() : names.size();
      float[][] out = new float[n][];
      for (int i = 0; i < n; i++) {
        OnnxValue v = result.get(i);
        String name = expected != null ? expected.get(i).name() : names.get(i);
        if (!(v instanceof OnnxTensor t) || t.getInfo().type != OnnxJavaType.FLOAT) {
          throw StagecraftException.user("Invalid ONNX model %s: output '%s' is %s (expected a float tensor)", where,
              name, v.getInfo());
        }
        FloatBuffer fb = t.getFloatBuffer();
        out[i] = new float[fb.remaining()];
        fb.get(out[i]);
        if (out[i].length % rows != 0) {
          throw StagecraftException.user("Invalid ONNX model %s: output '%s' has %d values for %d rows (expected "
              + "[N] or [N, w])", where, name, out[i].length, rows);
        }
      }
      return out;
    }
  }

  @Override
  public void close() {
    try {
      session.close();
    } catch (OrtException e) {
      org.slf4j.LoggerFactory.getLogger(OnnxScorer.class).warn("Cannot close ONNX session {}: {}", where,
          e.toString());
    }
  }
}
