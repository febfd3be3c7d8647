package dev.stagecraft.jobs.engine;

import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** A hand-written fake kind that runs until the test releases it: keeps a run live for as long as a test needs. */
final class BlockingKind implements StepKind {
  static volatile CountDownLatch started = new CountDownLatch(1);
  static volatile CountDownLatch release = new CountDownLatch(1);

  static void reset() {
    reset(1);
  }

  /** The next {@code steps} blocking steps count down {@link #started}. */
  static void reset(int steps) {
    started = new CountDownLatch(steps);
    release = new CountDownLatch(1);
  }

  @Override
  public String name() {
    return "block";
  }

  @Override
  public List<FieldSpec> fields() {
    return List.of();
  }

  @Override
  public List<String> outputs() {
    return List.of("output");
  }

  @Override
  public void run(StepContext ctx) throws InterruptedException {
    started.countDown();
    if (!release.await(60, TimeUnit.SECONDS)) {
      throw new IllegalStateException("test never released the blocking step");
    }
    ctx.writeTable("output", ctx.spark().sql("SELECT 1 AS x"));
  }
}
