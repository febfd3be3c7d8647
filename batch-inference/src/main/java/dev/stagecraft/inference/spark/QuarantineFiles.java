package dev.stagecraft.inference.spark;

import static java.util.Objects.requireNonNull;

import java.io.IOException;
import java.io.Serializable;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.mapreduce.Job;
import org.apache.hadoop.mapreduce.TaskAttemptID;
import org.apache.hadoop.mapreduce.TaskType;
import org.apache.hadoop.mapreduce.task.TaskAttemptContextImpl;
import org.apache.spark.TaskContext;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.execution.datasources.OutputWriter;
import org.apache.spark.sql.execution.datasources.OutputWriterFactory;
import org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.util.CollectionAccumulator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The bad rows of an {@code infer} step, written by the scoring tasks themselves as they score, so the step reads its
 * input once: each task attempt that meets a bad row writes them to its own Parquet file in the attempt's scratch
 * folder ({@code part-P-attempt-A-T}) and, when its partition is done, reports that file through an accumulator.
 *
 * <p>Why that is exactly once: the scoring runs in the last stage of the output's write job, and Spark applies an
 * accumulator update of such a (result) task only for the one attempt per partition whose success it accepted — the
 * attempt whose output was committed; failed, killed and duplicate attempts leave files nobody names. The driver
 * then copies the named files into the step's quarantine output ({@link #accepted}); the scratch folder goes with the
 * attempt.
 */
final class QuarantineFiles implements Serializable {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(QuarantineFiles.class);

  /** One task attempt's file: its path, its rows and the first row's reason (for error messages). */
  record File(String path, long rows, String firstReason) implements Serializable {}

  private final String dir;
  private final StructType schema;
  private final OutputWriterFactory factory;
  private final HadoopConf conf;
  private final CollectionAccumulator<File> accepted;

  private QuarantineFiles(String dir, StructType schema, OutputWriterFactory factory, HadoopConf conf,
      CollectionAccumulator<File> accepted) {
    this.dir = dir;
    this.schema = schema;
    this.factory = factory;
    this.conf = conf;
    this.accepted = accepted;
  }

  /**
   * @param dir a folder only this step attempt writes to
   * @param schema the quarantine's columns: the id columns, then the reason
   */
  static QuarantineFiles create(SparkSession spark, String dir, StructType schema) throws IOException {
    Job job = Job.getInstance(spark.sessionState().newHadoopConf());
    // Spark's own Parquet writer for internal rows, configured as a DataFrame write of this schema would be.
    OutputWriterFactory factory = new ParquetFileFormat().prepareWrite(spark, job,
        scala.collection.immutable.Map$.MODULE$.empty(), schema);
    CollectionAccumulator<File> accepted = spark.sparkContext().collectionAccumulator("infer.quarantine");
    return new QuarantineFiles(dir, schema, factory, new HadoopConf(job.getConfiguration()), accepted);
  }

  /** The files of the accepted attempts, once the job that ran the tasks has ended. */
  List<File> accepted() {
    return List.copyOf(accepted.value());
  }

  /** A writer for the running task attempt; nothing is created until its first row. */
  Writer writer() {
    return new Writer();
  }

  /** One task attempt's file. */
  final class Writer {
    private OutputWriter out;
    private Path path;
    private long rows;
    private String firstReason;

    void write(InternalRow row, String reason) {
      if (out == null) {
        open();
        firstReason = reason;
      }
      out.write(row);
      rows++;
    }

    private void open() {
      TaskContext tc = TaskContext.get();
      int partition = tc == null ? 0 : tc.partitionId();
      int attempt = tc == null ? 0 : tc.attemptNumber();
      long task = tc == null ? 0 : tc.taskAttemptId();
      Configuration c = conf.get();
      TaskAttemptContextImpl context = new TaskAttemptContextImpl(c,
          new TaskAttemptID("stagecraft", 0, TaskType.MAP, partition, attempt));
      String name = String.format("part-%05d-attempt-%d-%d%s", partition, attempt, task,
          factory.getFileExtension(context));
      path = new Path(dir, name);
      out = factory.newInstance(path.toString(), schema, context);
    }

    /** Closes the file and reports it; called once the partition has been read to its end. */
    void finish() {
      if (out == null) {
        return;
      }
      out.close();
      out = null;
      accepted.add(new File(path.toString(), rows, requireNonNull(firstReason)));
    }

    /** Closes and deletes an unfinished file (the attempt failed); best effort, it is never named anyway. */
    void abort() {
      if (out == null) {
        return;
      }
      try {
        out.close();
        FileSystem fs = path.getFileSystem(conf.get());
        fs.delete(path, false);
      } catch (IOException | RuntimeException e) {
        LOG.debug("Cannot delete the unfinished quarantine file {}: {}", path, e.toString());
      } finally {
        out = null;
      }
    }
  }
}
