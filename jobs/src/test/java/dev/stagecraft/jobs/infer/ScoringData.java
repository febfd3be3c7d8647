package dev.stagecraft.jobs.infer;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * Input for infer steps whose every id can be accounted for, a model to score it with, and the check that an
 * infer step's committed output and quarantine hold each id exactly once.
 */
public final class ScoringData {
  public static final int FEATURES = 123;
  /** Every {@value}th row (from id 13) is bad: its feature x[3] is NaN. */
  public static final long BAD_EVERY = 997;

  private ScoringData() {}

  /**
   * Writes {@code rows} rows in {@code partitions} Parquet files at {@code uri}: {@code id}, {@code x} (123 doubles in
   * [0, 1), but NaN at x[3] in the bad rows).
   */
  public static void input(SparkSession spark, String uri, long rows, int partitions) {
    spark.range(0, rows, 1, partitions)
        .selectExpr("id", "transform(sequence(0, " + (FEATURES - 1) + "), i -> IF(id % " + BAD_EVERY + " = 13 AND "
            + "i = 3, CAST('NaN' AS DOUBLE), CAST((id * 31 + i) % 17 AS DOUBLE) / 17)) AS x")
        .write().parquet(uri);
  }

  public static long badRows(long rows) {
    return rows <= 13 ? 0 : (rows - 1 - 13) / BAD_EVERY + 1;
  }

  /** A binary MLP bundle (two hidden layers of 256) with random weights from {@code seed}, features from {@code x}. */
  public static Path mlp(Path dir, long seed) throws Exception {
    double[] mean = new double[FEATURES];
    double[] std = new double[FEATURES];
    Arrays.fill(std, 1);
    return Bundles.write(dir, "mlp", List.of(256, 256), "binary", 2, List.of(), "x", mean, std,
        Bundles.randomParameters(List.of(FEATURES, 256, 256, 1), seed));
  }

  /**
   * Asserts the committed output and quarantine together hold exactly the input's ids, once each: the good ones in
   * the output, the bad ones in the quarantine with their reason.
   */
  public static void assertExactlyOnce(SparkSession spark, String output, String quarantine, long rows) {
    long bad = badRows(rows);
    String isBad = "id % " + BAD_EVERY + " = 13";
    Dataset<Row> out = spark.read().parquet(output);
    Row counts = out.selectExpr("count(*)", "count(DISTINCT id)", "min(id)", "max(id)",
        "count_if(" + isBad + ")").first();
    assertThat(counts.getLong(0)).as("output rows").isEqualTo(rows - bad);
    assertThat(counts.getLong(1)).as("distinct ids").isEqualTo(rows - bad);
    assertThat(counts.getLong(2)).isZero();
    assertThat(counts.getLong(3)).isEqualTo(rows - 1);
    assertThat(counts.getLong(4)).as("bad rows in the output").isZero();
    Dataset<Row> q = spark.read().parquet(quarantine);
    Row qc = q.selectExpr("count(*)", "count(DISTINCT id)", "count_if(" + isBad + ")", "count(DISTINCT reason)",
        "first(reason)").first();
    assertThat(qc.getLong(0)).as("quarantined rows").isEqualTo(bad);
    assertThat(qc.getLong(1)).as("distinct quarantined ids").isEqualTo(bad);
    assertThat(qc.getLong(2)).as("quarantined rows that are bad").isEqualTo(bad);
    assertThat(qc.getLong(3)).isEqualTo(1);
    assertThat(qc.getString(4)).isEqualTo("feature 'x[3]' is NaN or infinite");
  }
}
