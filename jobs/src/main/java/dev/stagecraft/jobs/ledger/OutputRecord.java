package dev.stagecraft.jobs.ledger;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonInclude;

/**
 * One committed output of a step. (A table output is read back as a DataFrame by
 * {@code dev.stagecraft.jobs.engine.OutputTables}: the ledger itself needs no Spark.)
 *
 * @param format {@code parquet} for a table output (registered as a view for downstream SQL), {@code dir} otherwise
 * @param rows rows of a table output
 * @param schema a table output's Spark schema as JSON (absent in ledgers written before it was recorded)
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record OutputRecord(String uri, String format, Long rows, String schema) {
  public static final String TABLE = "parquet";
  public static final String DIRECTORY = "dir";

  /** @param schemaJson the table's Spark schema as JSON ({@code StructType.json()}) */
  public static OutputRecord table(String uri, long rows, String schemaJson) {
    return new OutputRecord(uri, TABLE, rows, schemaJson);
  }

  public static OutputRecord directory(String uri) {
    return new OutputRecord(uri, DIRECTORY, null, null);
  }

  @JsonIgnore
  public boolean isTable() {
    return TABLE.equals(format);
  }
}
