package dev.stagecraft.spi;

import org.apache.hadoop.conf.Configuration;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * What a running step may use. One context per step attempt; not shared between threads of different steps.
 *
 * <p>Outputs written here go to the attempt's staging location and are committed by the engine when
 * {@link StepKind#run} returns; a failed attempt's outputs are never visible.
 */
public interface StepContext {

  /** The run this step belongs to. */
  String runId();

  /** The step, with parameters and upstream outputs substituted. */
  StepConfig step();

  /**
   * A Spark session for this step alone (sharing the application's SparkContext). Every upstream step's table output
   * is registered in it as a temporary view named by that step's id.
   */
  SparkSession spark();

  /**
   * {@code rdd} under this step's resource profile (its policy's executor and task requests), so the stage computing
   * it runs on executors of that shape. Spark 3.5 has stage-level scheduling only for RDDs: a kind applies this to the
   * RDD its expensive stage computes (scoring, barrier training). Returns {@code rdd} unchanged where Spark cannot
   * honour a profile (local mode, or a policy that matches the application's default executors).
   */
  default <T> org.apache.spark.api.java.JavaRDD<T> withStepResources(org.apache.spark.api.java.JavaRDD<T> rdd) {
    return rdd;
  }

  /**
   * How the step's collectives (the {@code train} step's ring all-reduce) protect their frames, as the step's
   * resource policy says ({@code collectives: { integrity: mac | encrypt | none }}); empty when the policy does not
   * say, or the step names none: the kind's default then applies.
   */
  default java.util.Optional<String> collectiveIntegrity() {
    return java.util.Optional.empty();
  }

  /** The Hadoop configuration for workspace and data access. */
  Configuration hadoopConf();

  /**
   * Reads an input named in the workflow: the id of an upstream step with a table output, or a path/URI to Parquet.
   *
   * @throws StagecraftException (user) if the name is neither an upstream step nor a readable path
   */
  Dataset<Row> input(String field, String reference);

  /**
   * Writes {@code data} as this step's table output {@code output} (Parquet) into the attempt's staging location.
   *
   * @return the number of rows written
   */
  long writeTable(String output, Dataset<Row> data);

  /**
   * A fresh, empty directory URI in the attempt's staging location for a non-table output (a model bundle, a report).
   */
  String outputLocation(String output);

  /**
   * A fresh, empty folder {@code models/NAME/VERSION/} in the workspace for a model bundle, registered as output
   * {@code output}; VERSION names the run and attempt. Committed like every output: a failed attempt's folder is
   * deleted and never named by the ledger.
   */
  String modelLocation(String output, String modelName);

  /**
   * The folder {@code checkpoints/RUN-ID/STEP/} in the workspace for this step's checkpoints. Unlike outputs it is
   * the same for every attempt and survives failures, so a later attempt (or {@code run --resume} after the whole
   * application died) continues from what an earlier one saved.
   */
  String checkpointLocation();

  /**
   * A directory URI for this attempt's intermediate data — e.g. what {@link StepKind#prepare} stages for the attempt it
   * prepares — the same in the workflow's application and in the step's own; the engine deletes it once the attempt
   * has ended, whatever its outcome. Not an output: nothing in it is committed.
   */
  String scratchLocation();

  /** Tells the console how the step is doing, in the step's own terms ("epoch 2/5, loss 0.34, ETA 12s"). */
  void progress(String status);

  /** {@code path} as given if it is absolute or a URI, else resolved against the workflow file's folder. */
  String resolvePath(String path);

  /** Records a metric for the ledger (e.g. {@code accuracy}, {@code loss}). */
  void metric(String name, double value);

  /**
   * Records a structured detail for the ledger, kept also when the attempt fails (e.g. the training attempts of a
   * step and the checkpoint each resumed from). {@code value} is anything Jackson writes as JSON: strings, numbers,
   * lists and maps of them.
   */
  void detail(String name, Object value);

  /**
   * What {@link StepKind#prepare} returned for this attempt in the workflow's application, when the step runs as its own
   * application; empty otherwise.
   */
  default java.util.Map<String, Object> prepared() {
    return java.util.Map.of();
  }
}
