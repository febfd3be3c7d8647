package dev.stagecraft.training.spark;

import dev.stagecraft.training.checkpoint.ShippedConfiguration;
import dev.stagecraft.training.loop.WorkerLoop;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;

/**
 * A {@code train} step's data as the workflow's application staged it for the step's own application: per worker, one
 * file of its rows, standardised, as the barrier task holds them in memory — so that the training application's GPU
 * executors read one file each with plain Hadoop I/O and run no shuffle, no Spark SQL and no evaluation job (each of
 * which costs seconds of class loading and code generation on a cold executor). Written once per attempt into its
 * scratch location; the validation set, if any, is split the same way and scored by the workers after training.
 *
 * <p>File format (little-endian): magic, version, rows, features (4 ints), then the labels (rows floats) and the
 * features (rows × features floats, row-major).
 */
final class Shards implements Serializable {
  private static final long serialVersionUID = 1L;
  static final int MAGIC = 0x53435348; // "SCSH"
  static final int VERSION = 1;
  static final String TRAIN = "train";
  static final String VALIDATION = "validation";
  private static final int HEADER_BYTES = 16;
  private static final int IO_BUFFER_BYTES = 1 << 20;

  private final String dir;
  private final int workers;
  private final boolean validation;
  private final ShippedConfiguration conf;

  Shards(String dir, int workers, boolean validation, Configuration conf) {
    this.dir = dir;
    this.workers = workers;
    this.validation = validation;
    this.conf = ShippedConfiguration.of(conf);
  }

  int workers() {
    return workers;
  }

  boolean hasValidation() {
    return validation;
  }

  /**
   * Writes {@code selected} (label first, then the features as {@link TrainingInput#select} gives them) as
   * {@code workers} shards of set {@code set}, split as the barrier stage's repartition would; returns the rows of each.
   */
  List<Integer> write(String set, Dataset<Row> selected, TrainingInput.Features features, double[] mean,
      double[] std) {
    String root = dir;
    ShippedConfiguration shipped = conf;
    return selected.repartition(workers).javaRDD().mapPartitionsWithIndex((index, rows) -> {
      WorkerLoop.LocalData data = TrainTask.materialise(rows, features, mean, std);
      writeShard(shipped.get(), path(root, set, index), data);
      return List.of(data.rows()).iterator();
    }, false).collect();
  }

  /** Shard {@code rank} of set {@code set}. */
  WorkerLoop.LocalData read(String set, int rank) throws IOException {
    Path file = path(dir, set, rank);
    String what = "Cannot read the staged " + set + " data of worker " + rank + " at " + file;
    try {
      return read(file, what);
    } catch (ShardFormatException e) {
      throw e;
    } catch (IOException e) {
      throw new IOException(what + ": " + (e.getMessage() == null ? e.getClass().getSimpleName()
          : e.getClass().getSimpleName() + ": " + e.getMessage()), e);
    }
  }

  /** A file that is not a shard this code can read. */
  static final class ShardFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    ShardFormatException(String message) {
      super(message);
    }
  }

  private WorkerLoop.LocalData read(Path file, String what) throws IOException {
    FileSystem fs = file.getFileSystem(conf.get());
    try (FSDataInputStream raw = fs.open(file, IO_BUFFER_BYTES); DataInputStream in = new DataInputStream(raw)) {
      byte[] header = new byte[HEADER_BYTES];
      in.readFully(header);
      ByteBuffer h = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN);
      int magic = h.getInt();
      int version = h.getInt();
      int rows = h.getInt();
      int nf = h.getInt();
      if (magic != MAGIC || version != VERSION || rows < 0 || nf < 0) {
        throw new ShardFormatException(what + ": not a shard of this version (magic " + Integer.toHexString(magic)
            + ", version " + version + ")");
      }
      float[] labels = readFloats(in, rows);
      float[] features = readFloats(in, Math.multiplyExact(rows, nf));
      return new WorkerLoop.LocalData(features, labels, rows, nf);
    }
  }

  private static float[] readFloats(DataInputStream in, int n) throws IOException {
    float[] out = new float[n];
    byte[] buffer = new byte[IO_BUFFER_BYTES];
    for (int done = 0; done < n; ) {
      int k = Math.min(n - done, buffer.length / Float.BYTES);
      in.readFully(buffer, 0, k * Float.BYTES);
      ByteBuffer.wrap(buffer, 0, k * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out, done, k);
      done += k;
    }
    return out;
  }

  static void writeShard(Configuration conf, Path file, WorkerLoop.LocalData data) throws IOException {
    FileSystem fs = file.getFileSystem(conf);
    try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(fs.create(file, true),
        IO_BUFFER_BYTES))) {
      out.write(ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN).putInt(MAGIC).putInt(VERSION)
          .putInt(data.rows()).putInt(data.numFeatures()).array());
      writeFloats(out, data.labels(), data.rows());
      writeFloats(out, data.features(), data.rows() * data.numFeatures());
    }
  }

  private static void writeFloats(DataOutputStream out, float[] values, int n) throws IOException {
    ByteBuffer buffer = ByteBuffer.allocate(IO_BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    for (int done = 0; done < n; ) {
      int k = Math.min(n - done, IO_BUFFER_BYTES / Float.BYTES);
      buffer.clear();
      buffer.asFloatBuffer().put(values, done, k);
      out.write(buffer.array(), 0, k * Float.BYTES);
      done += k;
    }
  }

  static Path path(String dir, String set, int rank) {
    return new Path(dir, String.format("%s-%05d.shard", set, rank));
  }

  /** What travels from {@code prepare} to the training application (JSON-friendly). */
  Map<String, Object> toMap(List<Integer> trainRows, List<Integer> validationRows) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("dir", dir);
    m.put("workers", workers);
    m.put("train_rows", trainRows);
    if (validation) {
      m.put("validation_rows", validationRows);
    }
    return m;
  }

  static Shards fromMap(Map<?, ?> m, Configuration conf) {
    return new Shards(String.valueOf(m.get("dir")), ((Number) m.get("workers")).intValue(),
        m.containsKey("validation_rows"), conf);
  }

  @Override
  public String toString() {
    return "Shards[" + dir + ", " + workers + " workers" + (validation ? ", with validation" : "") + "]";
  }
}
