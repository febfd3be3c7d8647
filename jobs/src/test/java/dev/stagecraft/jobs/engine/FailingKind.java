package dev.stagecraft.jobs.engine;

import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import java.util.List;

/**
 * A hand-written fake kind: writes its input as a table output (a real Spark write), then fails if the file named by
 * {@code fail_if_exists} exists — so a test decides when an attempt fails, after it has written data.
 */
final class FailingKind implements StepKind {
  @Override
  public String name() {
    return "write_then_fail";
  }

  @Override
  public List<FieldSpec> fields() {
    return List.of(
        FieldSpec.required("input", FieldSpec.Type.INPUT, "a step id or a Parquet path"),
        FieldSpec.required("fail_if_exists", FieldSpec.Type.STRING, "a local file path"));
  }

  @Override
  public List<String> outputs() {
    return List.of("output");
  }

  @Override
  public void run(StepContext ctx) {
    ctx.writeTable("output", ctx.input("input", ctx.step().requireString("input")));
    if (new java.io.File(ctx.step().requireString("fail_if_exists")).exists()) {
      throw StagecraftException.user("injected fault after writing %s rows", "all");
    }
  }
}
