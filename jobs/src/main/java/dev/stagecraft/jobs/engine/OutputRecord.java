package dev.stagecraft.jobs.engine;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonInclude;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;

/**
 * One committed output of a step.
 *
 * @param format {@code parquet} for a table output (registered as a view for downstream SQL), {@code dir} otherwise
 * @param rows rows of a table output
 * @param schema a table output's Spark schema as JSON (absent in ledgers written before it was recorded)
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record OutputRecord(String uri, String format, Long rows, String schema) {
  public static final String TABLE = "parquet";
  public static final String DIRECTORY = "dir";

  public static OutputRecord table(String uri, long rows, StructType schema) {
    return new OutputRecord(uri, TABLE, rows, schema.json());
  }

  public static OutputRecord directory(String uri) {
    return new OutputRecord(uri, DIRECTORY, null, null);
  }

  @JsonIgnore
  public boolean isTable() {
    return TABLE.equals(format);
  }

  /**
   * The table output as a DataFrame. With the recorded schema Spark reads no footer to infer it — inference is a Spark
   * job of its own, run on whatever executors the application has (GPU executors, in a training application).
   */
  public Dataset<Row> read(SparkSession spark) {
    return schema == null ? spark.read().parquet(uri)
        : spark.read().schema((StructType) DataType.fromJson(schema)).parquet(uri);
  }
}
