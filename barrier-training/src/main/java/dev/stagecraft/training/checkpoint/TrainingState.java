package dev.stagecraft.training.checkpoint;

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.inference.bundle.ParameterFile;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Everything a data-parallel training loop needs to continue exactly where it was, at a step boundary: the
 * parameters and optimizer state (identical on every rank after a synchronous step), the global step (which also
 * fixes each rank's dropout masks and the learning-rate schedule), and where the loop is in the data — the epoch
 * and the index, within that epoch's seeded shuffle, of the next local batch, the same on every rank. The loss curve
 * so far rides along, so the model bundle of a resumed run still shows the whole curve.
 *
 * <p>Arrays are owned by the state: whoever builds one hands over copies. The optimizer state comes as a supplier
 * of its encoded bytes, so a snapshot on the training thread only copies buffers and the checkpoint writer encodes
 * them ({@link dev.stagecraft.training.model.Optimizer#snapshotState()}).
 *
 * @param globalStep steps completed
 * @param epoch the epoch (1-based) of the next step
 * @param nextStepInEpoch the next step's index within {@code epoch} (0-based)
 * @param samples rows trained on so far, over all ranks
 * @param seconds training-loop time so far, over all attempts
 * @param curve the loss curve so far, {step, epoch, loss} per step, flattened
 */
public record TrainingState(long globalStep, int epoch, long nextStepInEpoch, long samples, double seconds,
    float[] parameters, Supplier<byte[]> optimizerState, double[] curve) {
  public static final String PARAMETERS = "parameters.bin";
  public static final String OPTIMIZER = "optimizer.bin";
  public static final String CURVE = "loss-curve.bin";
  public static final String STATE = "state.json";
  private static final ObjectMapper JSON = new ObjectMapper();

  public TrainingState {
    requireNonNull(parameters, "parameters is null");
    requireNonNull(optimizerState, "optimizerState is null");
    requireNonNull(curve, "curve is null");
    if (globalStep < 0 || epoch < 1 || nextStepInEpoch < 0 || curve.length % 3 != 0) {
      throw new IllegalArgumentException("Invalid training state: step " + globalStep + ", epoch " + epoch
          + ", next step in epoch " + nextStepInEpoch + ", " + curve.length + " curve values");
    }
  }

  /** The files of a checkpoint of this state. */
  public Map<String, byte[]> toFiles() {
    Map<String, byte[]> files = new LinkedHashMap<>();
    try {
      ByteArrayOutputStream p = new ByteArrayOutputStream(parameters.length * Float.BYTES + 32);
      ParameterFile.write(parameters, p);
      files.put(PARAMETERS, p.toByteArray());
      files.put(OPTIMIZER, optimizerState.get());
      ByteArrayOutputStream c = new ByteArrayOutputStream(curve.length * Double.BYTES + 4);
      DataOutputStream out = new DataOutputStream(c);
      out.writeInt(curve.length / 3);
      for (double v : curve) {
        out.writeDouble(v);
      }
      out.flush();
      files.put(CURVE, c.toByteArray());
      ObjectNode s = JSON.createObjectNode();
      s.put("global_step", globalStep).put("epoch", epoch).put("next_step_in_epoch", nextStepInEpoch)
          .put("samples", samples).put("seconds", seconds);
      files.put(STATE, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(s));
    } catch (IOException e) {
      throw new UncheckedIOException(e); // in memory: cannot happen
    }
    return files;
  }

  /**
   * The state in a checkpoint's (verified) files.
   *
   * @throws IOException naming the file that is malformed
   */
  public static TrainingState fromFiles(Map<String, byte[]> files) throws IOException {
    for (String name : new String[] {PARAMETERS, OPTIMIZER, CURVE, STATE}) {
      if (!files.containsKey(name)) {
        throw new IOException("the checkpoint has no file '" + name + "'");
      }
    }
    float[] parameters;
    try {
      parameters = ParameterFile.read(new ByteArrayInputStream(files.get(PARAMETERS)));
    } catch (IOException e) {
      throw new IOException("file '" + PARAMETERS + "': " + e.getMessage(), e);
    }
    double[] curve;
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(files.get(CURVE)))) {
      int points = in.readInt();
      if (points < 0 || (long) points * 3 * Double.BYTES != files.get(CURVE).length - 4L) {
        throw new IOException(points + " points do not fit " + files.get(CURVE).length + " bytes");
      }
      curve = new double[points * 3];
      for (int i = 0; i < curve.length; i++) {
        curve[i] = in.readDouble();
      }
    } catch (IOException e) {
      throw new IOException("file '" + CURVE + "': " + e.getMessage(), e);
    }
    try {
      JsonNode s = JSON.readTree(files.get(STATE));
      return new TrainingState(required(s, "global_step").asLong(), required(s, "epoch").asInt(),
          required(s, "next_step_in_epoch").asLong(), required(s, "samples").asLong(),
          required(s, "seconds").asDouble(), parameters, optimizerOf(files.get(OPTIMIZER)), curve);
    } catch (IOException | IllegalArgumentException e) {
      throw new IOException("file '" + STATE + "': " + e.getMessage(), e);
    }
  }

  private static JsonNode required(JsonNode s, String field) throws IOException {
    JsonNode v = s.get(field);
    if (v == null || !v.isNumber()) {
      throw new IOException("field '" + field + "' is missing or not a number");
    }
    return v;
  }

  private static Supplier<byte[]> optimizerOf(byte[] state) {
    return () -> state;
  }
}
