package dev.stagecraft.spi;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class StagecraftExceptionTest {
  @Test
  void firstLineKeepsTheMessageAndDropsTheRestAndSparkFoursSqlState() {
    assertThat(StagecraftException.firstLine("[PATH_NOT_FOUND] Path does not exist: file:/d/missing.csv.\n== Plan ==\n…"))
        .isEqualTo("[PATH_NOT_FOUND] Path does not exist: file:/d/missing.csv.");
    // Spark 4 appends the SQL state: the same line on both Spark lines.
    assertThat(StagecraftException.firstLine("[PATH_NOT_FOUND] Path does not exist: file:/d/missing.csv. SQLSTATE: 42K03"))
        .isEqualTo("[PATH_NOT_FOUND] Path does not exist: file:/d/missing.csv.");
    assertThat(StagecraftException.firstLine("  \n")).isEmpty();
    assertThat(StagecraftException.firstLine(null)).isEmpty();
    // Only a trailing state code is Spark's suffix.
    assertThat(StagecraftException.firstLine("column SQLSTATE: ABCDE is not a suffix here"))
        .isEqualTo("column SQLSTATE: ABCDE is not a suffix here");
  }
}
