package dev.stagecraft.spark;

import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.classic.ColumnConversions$;
import org.apache.spark.sql.classic.ExpressionUtils;
import org.apache.spark.sql.types.StructType;

/**
 * What Stagecraft needs from Spark that the two Spark lines spell differently, for Spark 4 / Scala 2.13. The
 * Spark 3.5 twin (src/main/spark-3.5/java) has the same methods; everything else is written once against both.
 *
 * <p>Spark 4 split the Dataset API in two: {@code org.apache.spark.sql.SparkSession} is now an interface-like class
 * shared with Spark Connect, and the JVM implementation ("classic") lives in {@code org.apache.spark.sql.classic}.
 * A Column no longer wraps a Catalyst expression but a ColumnNode, converted by {@link ExpressionUtils}.
 */
public final class SparkShim {
  /** The Spark line this build is for: "3.5" or "4". */
  public static final String LINE = "4";

  private SparkShim() {}

  /**
   * A DataFrame over rows already in Spark's internal form, with no conversion per row. Spark-private
   * ({@code private[sql]} in Scala, public in bytecode); on Spark 4 a method of the classic session only, which every
   * session in a Spark application (not a Connect client) is.
   */
  public static Dataset<Row> internalCreateDataFrame(SparkSession spark, RDD<InternalRow> rows, StructType schema) {
    if (!(spark instanceof org.apache.spark.sql.classic.SparkSession classic)) {
      throw new IllegalStateException("Stagecraft runs inside a Spark application; a Spark Connect session ("
          + spark.getClass().getName() + ") cannot run its steps");
    }
    return classic.internalCreateDataFrame(rows, schema, false);
  }

  /** A Catalyst expression as a {@link Column}. */
  public static Column column(Expression expression) {
    return ExpressionUtils.column(expression);
  }

  /**
   * The Catalyst expression behind a {@link Column} of the classic (non-Connect) API, converted as the classic
   * Dataset API converts it. ({@link ExpressionUtils#expression} only wraps the column's node in an expression that
   * Spark cannot evaluate outside the Dataset API: a function built from it fails at code generation.)
   */
  public static Expression expression(Column column) {
    return ColumnConversions$.MODULE$.expression(column);
  }
}
