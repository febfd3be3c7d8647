package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import java.util.Map;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;

/** Committed table outputs ({@link OutputRecord#isTable}) as Spark reads them. */
public final class OutputTables {
  private OutputTables() {}

  /**
   * The table output as a DataFrame. With the recorded schema Spark reads no footer to infer it — inference is a Spark
   * job of its own, run on whatever executors the application has (GPU executors, in a training application).
   */
  public static Dataset<Row> read(SparkSession spark, OutputRecord output) {
    return output.schema() == null ? spark.read().parquet(output.uri())
        : spark.read().schema((StructType) DataType.fromJson(output.schema())).parquet(output.uri());
  }

  /**
   * Registers the table outputs of step {@code id}'s upstream steps as temporary views of {@code session}: an upstream
   * step's first table under the step's id, any further one as {@code STEP_OUTPUT}.
   */
  static void registerUpstream(SparkSession session, WorkflowSpec spec, RunLedger ledger, String id) {
    for (String up : spec.allUpstream(id)) {
      boolean first = true;
      for (Map.Entry<String, OutputRecord> o : ledger.step(up).outputs().entrySet()) {
        if (o.getValue().isTable()) {
          String view = first ? up : up + "_" + o.getKey();
          read(session, o.getValue()).createOrReplaceTempView(view);
          first = false;
        }
      }
    }
  }
}
