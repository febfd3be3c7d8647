package dev.stagecraft.jobs.engine;

import com.fasterxml.jackson.annotation.JsonInclude;

/**
 * One committed output of a step.
 *
 * @param format {@code parquet} for a table output (registered as a view for downstream SQL), {@code dir} otherwise
 * @param rows rows of a table output
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record OutputRecord(String uri, String format, Long rows) {
  public static final String TABLE = "parquet";
  public static final String DIRECTORY = "dir";

  @com.fasterxml.jackson.annotation.JsonIgnore
  public boolean isTable() {
    return TABLE.equals(format);
  }
}
