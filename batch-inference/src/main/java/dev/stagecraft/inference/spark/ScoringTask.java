package dev.stagecraft.inference.spark;

import static java.util.Objects.requireNonNull;

import ai.djl.Device;
import dev.stagecraft.inference.cache.ModelCache;
import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.inference.score.Scorer;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.complex.FixedSizeListVector;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.InternalRow$;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.SpecializedGetters;
import org.apache.spark.sql.catalyst.expressions.UnsafeArrayData;
import org.apache.spark.sql.catalyst.expressions.UnsafeMapData;
import org.apache.spark.sql.catalyst.expressions.UnsafeRow;
import org.apache.spark.sql.catalyst.util.ArrayData;
import org.apache.spark.sql.catalyst.util.GenericArrayData;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.unsafe.Platform;
import org.apache.spark.unsafe.types.UTF8String;
import org.apache.spark.util.CollectionAccumulator;
import org.apache.spark.util.LongAccumulator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Scores one partition: rows laid out as {@code [id columns…, reason, features ARRAY<FLOAT>]} (see {@link FeaturePlan})
 * are gathered {@code batchSize} at a time into an Arrow {@link FixedSizeListVector} of floats whose data buffer —
 * row-major {@code [rows × n]} — is handed to the runtime without copying. Rows with a reason (bad rows), or with a
 * null or NaN/infinite feature (tested as each float is copied), skip the model and go, as {@code [id columns…,
 * reason]}, to the task's quarantine file ({@link QuarantineFiles}).
 *
 * <p>Output rows, scored rows only: {@code [id columns…, outputs…]} as {@link OutputHead} lays them out.
 */
final class ScoringTask implements FlatMapFunction<Iterator<InternalRow>, InternalRow>, Serializable {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(ScoringTask.class);

  /** How long an executor keeps an unused model loaded (system property, seconds). */
  static final String CACHE_IDLE_PROPERTY = "stagecraft.inference.cacheIdleSeconds";
  static final long CACHE_IDLE_DEFAULT_SECONDS = 60;

  /** One cache and one Arrow allocator per executor JVM. */
  static final ModelCache<Scorer> CACHE = new ModelCache<>(Duration.ofSeconds(
      Long.getLong(CACHE_IDLE_PROPERTY, CACHE_IDLE_DEFAULT_SECONDS)));
  private static final BufferAllocator ARROW = new RootAllocator(Long.MAX_VALUE);
  private static final AtomicBoolean ONNX_CPU_LOGGED = new AtomicBoolean();

  private final ModelRef model;
  private final DataType[] idTypes;
  private final int numFeatures;
  private final String[] featureNames;
  private final boolean doubleFeatures;
  private final double[] mean;
  private final double[] std;
  private final int batchSize;
  private final OutputHead head;
  private final int labelIndex;
  private final QuarantineFiles quarantine;
  private final Metrics metrics;

  /**
   * Driver-registered accumulators the tasks add to. The tasks run in the last stage of the output's write job, whose
   * accumulator updates Spark applies once per partition (the accepted attempt's), so the counts are exact.
   *
   * @param correct scored rows whose prediction equals their label (when there is a label)
   */
  record Metrics(LongAccumulator scoredRows, LongAccumulator badRows, LongAccumulator correct,
      LongAccumulator batches, LongAccumulator fillNanos, LongAccumulator scoreNanos,
      CollectionAccumulator<String> placements) implements Serializable {}

  /**
   * @param features how the features arrive: their names, doubles or floats, and what standardises them
   * @param labelIndex the id column holding the label, to count correct predictions, or -1
   */
  ScoringTask(ModelRef model, DataType[] idTypes, FeaturePlan.Layout features, int batchSize, OutputHead head,
      int labelIndex, QuarantineFiles quarantine, Metrics metrics) {
    this.model = requireNonNull(model, "model is null");
    this.idTypes = idTypes.clone();
    this.numFeatures = features.numFeatures();
    this.featureNames = features.names().clone();
    this.doubleFeatures = features.doubles();
    this.mean = features.mean() == null ? null : features.mean().clone();
    this.std = features.std() == null ? null : features.std().clone();
    this.batchSize = batchSize;
    this.head = requireNonNull(head, "head is null");
    this.labelIndex = labelIndex;
    this.quarantine = requireNonNull(quarantine, "quarantine is null");
    this.metrics = requireNonNull(metrics, "metrics is null");
  }

  @Override
  public Iterator<InternalRow> call(Iterator<InternalRow> rows) throws Exception {
    TaskContext tc = TaskContext.get();
    Optional<String> gpu = tc == null ? Optional.empty() : GpuBinding.address(tc.resourcesJMap());
    int cpus = tc == null ? 1 : Math.max(1, tc.cpus());
    Device device;
    if (model.kind() == ModelRef.Kind.BUNDLE) {
      device = Devices.select(gpu);
      Devices.setIntraOpThreads(cpus);
    } else {
      device = Device.cpu();
      if (gpu.isPresent() && ONNX_CPU_LOGGED.compareAndSet(false, true)) {
        LOG.warn("ONNX Runtime has no CUDA provider here: scoring on CPU (GPU address {} assigned by Spark is not "
            + "used)", gpu.get());
      }
    }
    ModelCache<Scorer>.Lease lease = CACHE.acquire(model.key(device.toString()), () -> model.load(device, cpus));
    Batcher batcher;
    try {
      batcher = new Batcher(rows, lease);
    } catch (RuntimeException e) {
      lease.close();
      throw e;
    }
    if (tc != null) {
      tc.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) ctx -> batcher.release());
      metrics.placements().add("executor=" + org.apache.spark.SparkEnv.get().executorId() + " partition="
          + tc.partitionId() + " gpu=" + gpu.orElse("none") + " device=" + device + " loads="
          + CACHE.loads(model.key(device.toString())));
    }
    return batcher;
  }

  /**
   * Pulls rows, fills one Arrow batch, scores it, and hands out the output rows; at the end of the partition it
   * finishes the quarantine file and reports the counts, and a failed attempt's {@link #release} drops both.
   */
  @SuppressWarnings({"unchecked", "rawtypes"})
  private static scala.Function2<SpecializedGetters, Object, Object>[] idGetters(DataType[] types) {
    scala.Function2<SpecializedGetters, Object, Object>[] getters = new scala.Function2[types.length];
    for (int i = 0; i < types.length; i++) {
      getters[i] = InternalRow$.MODULE$.getAccessor(types[i], true);
    }
    return getters;
  }

  private final class Batcher implements Iterator<InternalRow> {
    private final Iterator<InternalRow> in;
    private final ModelCache<Scorer>.Lease lease;
    private final BufferAllocator allocator;
    private final FixedSizeListVector batch;
    private final Float4Vector values;
    private final Object[][] ids;
    private final List<InternalRow> ready = new ArrayList<>();
    /** One row's values as read and as floats: plain arrays, so the JIT vectorises the standardising loop. */
    private final double[] read = new double[numFeatures];
    private final float[] narrowed = new float[numFeatures];
    /**
     * One typed getter per id column, made once per task. The generic {@code row.get(i, type)} looks the type up on
     * every call, and on Spark 4.2 that lookup reads the SQL configuration, which on an executor thread builds a new
     * read-only copy of it (binding the environment and system properties) each time: 26 % of the scoring task's
     * samples in a profile of {@code bench inference}.
     */
    private final scala.Function2<SpecializedGetters, Object, Object>[] idGetters = idGetters(idTypes);
    private final QuarantineFiles.Writer side = quarantine.writer();
    private int next;
    private boolean closed;
    private boolean released;
    private long scored;
    private long bad;
    private long correct;
    private long batches;
    private long fillNanos;
    private long scoreNanos;

    Batcher(Iterator<InternalRow> in, ModelCache<Scorer>.Lease lease) {
      this.in = in;
      this.lease = lease;
      this.allocator = ARROW.newChildAllocator("infer-task", 0, Long.MAX_VALUE);
      this.batch = new FixedSizeListVector("features", allocator, FieldType.notNullable(
          new ArrowType.FixedSizeList(numFeatures)), null);
      batch.addOrGetVector(FieldType.notNullable(new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE)));
      this.values = (Float4Vector) batch.getDataVector();
      batch.setInitialCapacity(batchSize);
      batch.allocateNew();
      values.allocateNew(batchSize * numFeatures);
      // Every slot is valid: rows with a null or bad value never get here (they are quarantined).
      batch.getValidityBuffer().setOne(0, batch.getValidityBuffer().capacity());
      values.getValidityBuffer().setOne(0, values.getValidityBuffer().capacity());
      this.ids = new Object[batchSize][];
    }

    @Override
    public boolean hasNext() {
      if (next < ready.size()) {
        return true;
      }
      ready.clear();
      next = 0;
      if (!closed) {
        fill();
      }
      if (ready.isEmpty()) {
        finish();
        return false;
      }
      return true;
    }

    @Override
    public InternalRow next() {
      if (!hasNext()) {
        throw new NoSuchElementException();
      }
      return ready.get(next++);
    }

    private void fill() {
      long t0 = System.nanoTime();
      long address = values.getDataBuffer().memoryAddress();
      int n = 0;
      int reasonAt = idTypes.length;
      while (n < batchSize && in.hasNext()) {
        InternalRow row = in.next();
        Object[] idValues = copyIds(row);
        if (!row.isNullAt(reasonAt)) {
          quarantine(idValues, row.getUTF8String(reasonAt).toString());
          continue;
        }
        long base = address + (long) n * numFeatures * Float.BYTES;
        String problem = copyFeatures(row.getArray(reasonAt + 1), base);
        if (problem != null) { // the slot is reused by the next row
          quarantine(idValues, problem);
          continue;
        }
        ids[n++] = idValues;
      }
      if (n == 0) {
        fillNanos += System.nanoTime() - t0;
        return;
      }
      batch.setValueCount(n);
      values.setValueCount(n * numFeatures);
      long t1 = System.nanoTime();
      // The vector's data buffer is the tensor's storage: no copy between Arrow and the runtime.
      ByteBuffer buffer = values.getDataBuffer().nioBuffer(0, n * numFeatures * Float.BYTES)
          .order(ByteOrder.nativeOrder());
      float[][] outputs = lease.model().score(buffer, n);
      long t2 = System.nanoTime();
      for (int r = 0; r < n; r++) {
        InternalRow out = head.scoredRow(ids[r], outputs, r);
        ready.add(out);
        if (labelIndex >= 0 && head.predictionEquals(ids[r][labelIndex], out, idTypes.length)) {
          correct++;
        }
        ids[r] = null;
      }
      scored += n;
      batches++;
      fillNanos += t1 - t0 + System.nanoTime() - t2;
      scoreNanos += t2 - t1;
    }

    private void quarantine(Object[] idValues, String reason) {
      Object[] v = java.util.Arrays.copyOf(idValues, idValues.length + 1);
      v[idValues.length] = UTF8String.fromString(reason);
      side.write(row(v), reason);
      bad++;
    }

    /**
     * Copies a row's features into the batch at {@code dest} as floats, standardising them where SQL did not;
     * returns why the row cannot be scored (a null or NaN/infinite feature, or a value beyond a float's range) or
     * null. An {@link UnsafeArrayData} (what Spark's projection produces) is checked
     * for nulls a 64-bit word at a time and copied in one block; anything else one value at a time.
     */
    private String copyFeatures(ArrayData features, long dest) {
      if (features.numElements() != numFeatures) { // FeaturePlan builds exactly numFeatures
        throw new IllegalStateException("Expected " + numFeatures + " features, got " + features.numElements());
      }
      if (features instanceof UnsafeArrayData a) {
        Object base = a.getBaseObject();
        long offset = a.getBaseOffset() + 8; // after numElements
        int words = (numFeatures + 63) / 64;
        long nulls = 0;
        for (int w = 0; w < words; w++) {
          nulls |= Platform.getLong(base, offset + 8L * w);
        }
        if (nulls == 0) {
          long data = offset + 8L * words;
          if (doubleFeatures || mean != null) {
            if (narrow(base, data, dest)) {
              return null;
            }
          } else {
            Platform.copyMemory(base, data, null, dest, (long) numFeatures * Float.BYTES);
          }
          int bad = firstNonFinite(dest);
          return bad < 0 ? null : "feature '" + featureNames[bad] + "' is NaN or infinite";
        }
      }
      for (int j = 0; j < numFeatures; j++) { // the first bad value, in order, names the reason
        if (features.isNullAt(j)) {
          return "feature '" + featureNames[j] + "' is null";
        }
        double x = doubleFeatures ? features.getDouble(j) : features.getFloat(j);
        float v = (float) (mean == null ? x : (x - mean[j]) / std[j]);
        if (!Float.isFinite(v)) {
          return "feature '" + featureNames[j] + "' is NaN or infinite";
        }
        Platform.putFloat(null, dest + (long) j * Float.BYTES, v);
      }
      return null;
    }

    /**
     * Copies one row's values (doubles, or floats to standardise) from {@code base + data} into the batch at {@code
     * dest} as floats, standardised in double where SQL did not; returns whether all are finite (a double too large
     * for a float becomes ±∞). Bulk copies around plain-array loops: with Unsafe reads and writes per value this cost
     * three quarters of an MLP's forward pass (profiled), as the JIT does not vectorise those.
     */
    private boolean narrow(Object base, long data, long dest) {
      if (doubleFeatures) {
        Platform.copyMemory(base, data, read, Platform.DOUBLE_ARRAY_OFFSET, (long) numFeatures * Double.BYTES);
      } else {
        Platform.copyMemory(base, data, narrowed, Platform.FLOAT_ARRAY_OFFSET, (long) numFeatures * Float.BYTES);
        for (int j = 0; j < numFeatures; j++) {
          read[j] = narrowed[j];
        }
      }
      if (mean == null) {
        for (int j = 0; j < numFeatures; j++) {
          narrowed[j] = (float) read[j];
        }
      } else {
        for (int j = 0; j < numFeatures; j++) {
          narrowed[j] = (float) ((read[j] - mean[j]) / std[j]);
        }
      }
      // NaN or ±∞: all exponent bits set; adding one to the exponent then carries into the sign bit.
      int carry = 0;
      for (int j = 0; j < numFeatures; j++) {
        carry |= (Float.floatToRawIntBits(narrowed[j]) & 0x7f800000) + 0x00800000;
      }
      Platform.copyMemory(narrowed, Platform.FLOAT_ARRAY_OFFSET, null, dest, (long) numFeatures * Float.BYTES);
      return carry >= 0;
    }

    /** The first feature at {@code address} whose exponent bits are all set (NaN or ±∞), or -1. */
    private int firstNonFinite(long address) {
      for (int j = 0; j < numFeatures; j++) {
        if ((Platform.getInt(null, address + (long) j * Float.BYTES) & 0x7f800000) == 0x7f800000) {
          return j;
        }
      }
      return -1;
    }

    private Object[] copyIds(InternalRow row) {
      Object[] v = new Object[idTypes.length];
      for (int i = 0; i < v.length; i++) {
        if (row.isNullAt(i)) {
          continue;
        }
        Object o = idGetters[i].apply(row, i);
        // The input row's buffer is reused for the next row: keep copies of anything that points into it.
        if (o instanceof UTF8String s) {
          o = s.clone();
        } else if (o instanceof UnsafeArrayData a) {
          o = a.copy();
        } else if (o instanceof UnsafeRow r) {
          o = r.copy();
        } else if (o instanceof UnsafeMapData m) {
          o = m.copy();
        } else if (o instanceof byte[] b) {
          o = b.clone();
        }
        v[i] = o;
      }
      return v;
    }

    /** The partition is read to its end: the quarantine file is complete and the counts final. */
    private void finish() {
      if (closed) {
        return;
      }
      side.finish();
      metrics.scoredRows().add(scored);
      metrics.badRows().add(bad);
      metrics.correct().add(correct);
      metrics.batches().add(batches);
      metrics.fillNanos().add(fillNanos);
      metrics.scoreNanos().add(scoreNanos);
      release();
    }

    /** Frees the batch and the model lease; an unfinished quarantine file (a failed attempt) is deleted. */
    void release() {
      closed = true;
      side.abort(); // nothing to do once finished
      if (released) {
        return;
      }
      released = true;
      try {
        batch.close();
        allocator.close();
      } catch (RuntimeException e) {
        LOG.warn("Cannot release the Arrow batch of an infer task: {}", e.toString());
      } finally {
        lease.close();
      }
    }
  }

  /** {@code count} floats from {@code offset} as an array of doubles (the type of array output columns). */
  static GenericArrayData doubles(float[] values, int offset, int count) {
    double[] d = new double[count];
    for (int i = 0; i < count; i++) {
      d[i] = values[offset + i];
    }
    return new GenericArrayData(d);
  }

  static InternalRow row(Object[] values) {
    return new GenericInternalRow(values);
  }
}
