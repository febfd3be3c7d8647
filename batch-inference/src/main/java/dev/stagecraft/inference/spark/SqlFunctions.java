package dev.stagecraft.inference.spark;

import org.apache.spark.ml.linalg.Vector;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.types.DataTypes;

/**
 * SQL functions Stagecraft adds to the sessions of {@code sql} steps. {@code vector_to_array(v)}: an MLlib vector
 * (e.g. a LIBSVM {@code features} column) as {@code ARRAY<DOUBLE>}, so later steps read plain arrays (which the RAPIDS
 * Accelerator handles) instead of vectors (a JVM UDT it does not). The function itself is a JVM UDF: RAPIDS runs it on
 * the CPU.
 */
public final class SqlFunctions {
  public static final String VECTOR_TO_ARRAY = "vector_to_array";

  private SqlFunctions() {}

  public static void register(SparkSession spark) {
    spark.udf().register(VECTOR_TO_ARRAY, (UDF1<Vector, double[]>) v -> v == null ? null : v.toArray(),
        DataTypes.createArrayType(DataTypes.DoubleType, false));
  }
}
