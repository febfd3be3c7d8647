package dev.stagecraft.spark;

import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.types.StructType;

/**
 * What Stagecraft needs from Spark that the two Spark lines spell differently, for Spark 3.5 / Scala 2.12. The
 * Spark 4 twin (src/main/spark-4/java) has the same methods; everything else is written once against both.
 */
public final class SparkShim {
  /** The Spark line this build is for: "3.5" or "4". */
  public static final String LINE = "3.5";

  private SparkShim() {}

  /**
   * A DataFrame over rows already in Spark's internal form, with no conversion per row. Spark-private
   * ({@code private[sql]} in Scala, public in bytecode); on 3.5 a method of {@link SparkSession} itself.
   */
  public static Dataset<Row> internalCreateDataFrame(SparkSession spark, RDD<InternalRow> rows, StructType schema) {
    return spark.internalCreateDataFrame(rows, schema, false);
  }

  /** A Catalyst expression as a {@link Column}: on 3.5 a Column wraps its expression. */
  public static Column column(Expression expression) {
    return new Column(expression);
  }

  /** The Catalyst expression behind a {@link Column} of the classic (non-Connect) API. */
  public static Expression expression(Column column) {
    return column.expr();
  }
}
