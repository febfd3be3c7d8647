package dev.stagecraft.jobs.infer;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * Writes a small ONNX model by hand (protobuf wire format, no ONNX library): logistic regression
 * {@code logit = X·W + b}, {@code probability = sigmoid(logit)}, with input {@code X: float[N, k]} (N dynamic) and
 * outputs {@code logit} and {@code probability}, both {@code float[N, 1]}. Opset 13, IR version 7.
 */
public final class TinyOnnx {
  private TinyOnnx() {}

  public static byte[] logistic(float[] w, float b) {
    int k = w.length;
    Proto graph = new Proto()
        .message(1, node(new String[] {"X", "W"}, "xw", "MatMul"))
        .message(1, node(new String[] {"xw", "B"}, "logit", "Add"))
        .message(1, node(new String[] {"logit"}, "probability", "Sigmoid"))
        .string(2, "tiny_logistic")
        .message(5, tensor("W", new long[] {k, 1}, w))
        .message(5, tensor("B", new long[] {1}, new float[] {b}))
        .message(11, valueInfo("X", "N", k))
        .message(12, valueInfo("logit", "N", 1))
        .message(12, valueInfo("probability", "N", 1));
    return new Proto()
        .varint(1, 7) // ir_version
        .string(2, "stagecraft-tests") // producer_name
        .message(7, graph)
        .message(8, new Proto().string(1, "").varint(2, 13)) // opset_import: default domain, version 13
        .bytes();
  }

  private static Proto node(String[] inputs, String output, String op) {
    Proto n = new Proto();
    for (String i : inputs) {
      n.string(1, i);
    }
    return n.string(2, output).string(3, op + "_" + output).string(4, op);
  }

  private static Proto tensor(String name, long[] dims, float[] values) {
    Proto t = new Proto();
    for (long d : dims) {
      t.varint(1, d);
    }
    ByteBuffer raw = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float v : values) {
      raw.putFloat(v);
    }
    return t.varint(2, 1) /* FLOAT */.string(8, name).raw(9, raw.array());
  }

  private static Proto valueInfo(String name, String batchDim, int width) {
    Proto shape = new Proto()
        .message(1, new Proto().string(2, batchDim))
        .message(1, new Proto().varint(1, width));
    Proto tensorType = new Proto().varint(1, 1).message(2, shape);
    return new Proto().string(1, name).message(2, new Proto().message(1, tensorType));
  }

  /** A protobuf message being written: fields in the order they are added. */
  static final class Proto {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    Proto varint(int field, long value) {
      tag(field, 0);
      writeVarint(value);
      return this;
    }

    Proto string(int field, String s) {
      return raw(field, s.getBytes(StandardCharsets.UTF_8));
    }

    Proto message(int field, Proto m) {
      return raw(field, m.bytes());
    }

    Proto raw(int field, byte[] b) {
      tag(field, 2);
      writeVarint(b.length);
      out.writeBytes(b);
      return this;
    }

    byte[] bytes() {
      return out.toByteArray();
    }

    private void tag(int field, int wireType) {
      writeVarint(((long) field << 3) | wireType);
    }

    private void writeVarint(long v) {
      while ((v & ~0x7FL) != 0) {
        out.write((int) ((v & 0x7F) | 0x80));
        v >>>= 7;
      }
      out.write((int) v);
    }
  }
}
