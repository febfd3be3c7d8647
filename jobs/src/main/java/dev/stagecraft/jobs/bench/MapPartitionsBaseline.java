package dev.stagecraft.jobs.bench;

import static org.apache.spark.sql.functions.col;

import dev.stagecraft.inference.runtime.Devices;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.NoSuchElementException;
import org.apache.spark.api.java.function.MapPartitionsFunction;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * The strongest hand-written Spark baseline for {@code bench inference}: {@code Dataset.mapPartitions} over a typed
 * Dataset (the features arrive as a primitive {@code double[]}, no boxing), standardising each row in Java exactly as
 * the row UDF does, filling a direct buffer of {@value InferenceBench#BATCH} rows and calling the same network (loaded
 * once per JVM, one intra-op thread per task) once per batch; it writes the same columns as the row UDF to Parquet.
 *
 * <p>Public only because Spark's bean encoder generates code, outside this package, that builds {@link In}.
 */
public final class MapPartitionsBaseline {
  private MapPartitionsBaseline() {}

  /** One input row as Spark's bean encoder fills it. */
  public static final class In implements Serializable {
    private static final long serialVersionUID = 1L;
    private long rowId;
    private int label;
    private double[] features;

    public long getRowId() {
      return rowId;
    }

    public void setRowId(long rowId) {
      this.rowId = rowId;
    }

    public int getLabel() {
      return label;
    }

    public void setLabel(int label) {
      this.label = label;
    }

    public double[] getFeatures() {
      return features;
    }

    public void setFeatures(double[] features) {
      this.features = features;
    }
  }

  /** The row UDF's output columns, in its order. */
  static final StructType OUT = new StructType().add("row_id", DataTypes.LongType, false)
      .add("label", DataTypes.IntegerType, false).add("probability", DataTypes.DoubleType, false)
      .add("prediction", DataTypes.DoubleType, false);

  /** Seconds to score {@code input} in batches inside {@code mapPartitions} and write the result to Parquet. */
  static double seconds(SparkSession spark, Path dir, String bundle, String input, String model) {
    long t0 = System.nanoTime();
    write(spark, bundle, input, output(dir, model));
    return (System.nanoTime() - t0) / 1e9;
  }

  /** Where {@link #seconds} writes for {@code model}: the last run's output (the timed one). */
  static String output(Path dir, String model) {
    return dir.resolve("map-partitions-" + model.replaceAll("[^a-z0-9]", "_")).toUri().toString();
  }

  /** Scores {@code input} with the model at {@code bundle} and writes {@link #OUT} to {@code out}. */
  static void write(SparkSession spark, String bundle, String input, String out) {
    spark.read().parquet(input).select(col("row_id").as("rowId"), col("label"), col("features"))
        .as(Encoders.bean(In.class))
        .mapPartitions((MapPartitionsFunction<In, Row>) rows -> new Batches(bundle, rows), Encoders.row(OUT))
        .write().mode("overwrite").parquet(out);
  }

  /** A partition's rows scored a batch at a time: fill, one network call, hand the batch's rows out, refill. */
  private static final class Batches implements Iterator<Row> {
    private final InferenceBench.Loaded model;
    private final Iterator<In> rows;
    private final int nf;
    private final ByteBuffer buffer;
    private final long[] ids = new long[InferenceBench.BATCH];
    private final int[] labels = new int[InferenceBench.BATCH];
    private float[] probabilities = new float[0];
    private int filled;
    private int next;

    Batches(String bundle, Iterator<In> rows) {
      this.model = InferenceBench.cached(bundle);
      this.rows = rows;
      this.nf = model.network().numFeatures();
      Devices.setIntraOpThreads(1); // as the infer step's tasks (one CPU each)
      this.buffer = ByteBuffer.allocateDirect(InferenceBench.BATCH * nf * 4).order(ByteOrder.nativeOrder());
    }

    @Override
    public boolean hasNext() {
      if (next < filled) {
        return true;
      }
      fill();
      return filled > 0;
    }

    @Override
    public Row next() {
      if (!hasNext()) {
        throw new NoSuchElementException();
      }
      int i = next++;
      double p = probabilities[i];
      return RowFactory.create(ids[i], labels[i], p, p >= 0.5 ? 1.0 : 0.0);
    }

    private void fill() {
      int n = 0;
      while (n < InferenceBench.BATCH && rows.hasNext()) {
        In r = rows.next();
        ids[n] = r.getRowId();
        labels[n] = r.getLabel();
        double[] x = r.getFeatures();
        int base = n * nf * 4;
        for (int j = 0; j < nf; j++) {
          buffer.putFloat(base + j * 4, model.standardised(j, x[j]));
        }
        n++;
      }
      filled = n;
      next = 0;
      if (n > 0) {
        // The network reads the buffer from its start to its limit: a short last batch gets a view of its rows.
        ByteBuffer rowsOnly = n == InferenceBench.BATCH ? buffer
            : buffer.slice(0, n * nf * 4).order(ByteOrder.nativeOrder());
        probabilities = model.network().score(rowsOnly, n)[0];
      }
    }
  }
}
