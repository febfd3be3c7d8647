package dev.stagecraft.jobs.kinds;

import static dev.stagecraft.spi.FieldSpec.Type.MAP;
import static dev.stagecraft.spi.FieldSpec.Type.STRING;

import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.SizingTraits;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.sql.AnalysisException;
import org.apache.spark.sql.DataFrameReader;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.types.StructType;

/**
 * {@code load}: reads CSV, Parquet, JSON or LIBSVM into the step's table output.
 *
 * <p>{@code options} go to Spark's reader unchanged (e.g. {@code header}, {@code numFeatures}); {@code schema} is a
 * DDL string ({@code "id INT, name STRING"}). A relative {@code path} is resolved against the workflow file's folder.
 */
public final class LoadStep implements StepKind {
  static final List<String> FORMATS = List.of("csv", "json", "libsvm", "parquet");

  @Override
  public String name() {
    return "load";
  }

  /** Right-sizing: Spark re-runs a lost task and the step's output is the same. */
  @Override
  public SizingTraits sizing(StepConfig step, Map<String, Double> lastMetrics) {
    return SizingTraits.IDEMPOTENT;
  }

  @Override
  public List<FieldSpec> fields() {
    return List.of(
        FieldSpec.required("path", STRING, "a file or folder path, or a URI such as hdfs://nn:8020/data/x.csv"),
        FieldSpec.optional("format", STRING, "one of: " + String.join(", ", FORMATS)),
        FieldSpec.optional("options", MAP, "a map of Spark reader options, e.g. {header: true}"),
        FieldSpec.optional("schema", STRING, "a DDL schema such as \"id INT, name STRING\""));
  }

  @Override
  public List<String> outputs() {
    return List.of("output");
  }

  @Override
  public void validate(StepConfig step) {
    if (step.string("path").orElse("").contains("${") && step.string("format").isEmpty()) {
      return; // the extension is known only once the path is substituted: checked when the step runs
    }
    String format = format(step);
    Optional<String> schema = step.string("schema").filter(s -> !s.contains("${"));
    if (schema.isPresent()) {
      if (format.equals("libsvm") || format.equals("parquet")) {
        throw step.invalid("schema", "format '" + format + "' carries its own schema (expected no 'schema' field)");
      }
      try {
        StructType.fromDDL(schema.get());
      } catch (Exception e) { // ParseException: checked in Java's eyes, never declared by Scala
        throw step.invalid("schema", "cannot parse '" + schema.get() + "': " + StagecraftException.firstLine(e.getMessage())
            + " (expected a DDL schema such as \"id INT, name STRING\")");
      }
    }
    step.stringMap("options");
  }

  @Override
  public void run(StepContext ctx) {
    StepConfig step = ctx.step();
    String format = format(step);
    String path = step.requireString("path");
    DataFrameReader reader = ctx.spark().read().format(format).options(step.stringMap("options"));
    step.string("schema").ifPresent(reader::schema);
    Dataset<Row> data;
    try {
      data = reader.load(ctx.resolvePath(path));
    } catch (Exception e) { // Scala's AnalysisException is checked in Java's eyes but never declared
      if (e instanceof AnalysisException) {
        throw step.invalid("path", "cannot read '" + path + "' as " + format + ": " + StagecraftException.firstLine(e.getMessage()));
      }
      throw (RuntimeException) e;
    }
    ctx.writeTable("output", data);
  }

  /** The declared format, or the one the path's extension names. */
  static String format(StepConfig step) {
    Optional<String> declared = step.string("format").filter(f -> !f.contains("${"));
    if (declared.isPresent()) {
      String f = declared.get().toLowerCase(Locale.ROOT);
      if (!FORMATS.contains(f)) {
        throw step.invalid("format", "unknown format '" + declared.get() + "' (expected one of: "
            + String.join(", ", FORMATS) + ")");
      }
      return f;
    }
    if (step.string("format").isPresent()) {
      return "parquet"; // a ${…} reference: checked when the step runs
    }
    String path = step.string("path").orElse("").toLowerCase(Locale.ROOT).replaceAll("/+$", "");
    for (String f : FORMATS) {
      if (path.endsWith("." + f) || (f.equals("json") && path.endsWith(".jsonl"))) {
        return f;
      }
    }
    throw step.invalid("format", "is missing and the path '" + step.string("path").orElse("")
        + "' does not tell (expected one of: " + String.join(", ", FORMATS) + ")");
  }
}
