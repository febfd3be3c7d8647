package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.LeaseLostException;
import dev.stagecraft.jobs.ledger.LedgerStore;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorCompletionService;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BiConsumer;
import org.apache.spark.sql.SparkSession;

/**
 * Runs a call's steps in dependency order, as the ledger says: a step starts once all its upstream steps succeeded
 * (up to {@code maxParallel} at a time, each on a thread of its own), and is recorded SKIPPED as soon as one of them
 * failed or was skipped. The run's status is then what its steps say.
 */
final class StepScheduler {
  private final SparkSession spark;
  private final EngineListener listener;
  /** Runs one attempt of one step; never throws for a step failure. */
  private final BiConsumer<RunContext, StepConfig> attempt;

  StepScheduler(SparkSession spark, EngineListener listener, BiConsumer<RunContext, StepConfig> attempt) {
    this.spark = spark;
    this.listener = listener;
    this.attempt = attempt;
  }

  /** Runs {@code toRun} (in workflow order) and returns the ledger with the run's status from its steps. */
  RunLedger execute(RunContext call, List<String> toRun) {
    WorkflowSpec spec = call.spec();
    LedgerStore store = call.store();
    String runId = call.runId();
    ExecutorService pool = Executors.newFixedThreadPool(
        Math.min(call.options().maxParallel(), Math.max(1, toRun.size())), r -> {
          Thread t = new Thread(r, "stagecraft-step");
          t.setDaemon(true);
          return t;
        });
    ExecutorCompletionService<String> done = new ExecutorCompletionService<>(pool);
    Set<String> waiting = new LinkedHashSet<>(toRun);
    Set<String> running = new LinkedHashSet<>();
    AtomicReference<LeaseLostException> lost = new AtomicReference<>();
    try {
      while (!waiting.isEmpty() || !running.isEmpty()) {
        if (lost.get() != null) {
          waiting.clear(); // another process holds the run: start nothing more
        }
        RunLedger ledger = store.read(runId).orElseThrow();
        boolean changed = true;
        while (changed) { // a skip can make a downstream step skippable in the same pass
          changed = false;
          for (String id : List.copyOf(waiting)) {
            Set<String> ups = spec.upstream().get(id);
            RunLedger l = ledger;
            Optional<String> failedUp = ups.stream()
                .filter(u -> l.step(u).status() == StepStatus.FAILED || l.step(u).status() == StepStatus.SKIPPED)
                .findFirst();
            if (failedUp.isPresent()) {
              waiting.remove(id);
              String reason = "upstream step '" + failedUp.get() + "' "
                  + l.step(failedUp.get()).status().name().toLowerCase(Locale.ROOT);
              try {
                ledger = store.update(runId, x -> x.withStep(id, r -> r.skipped(reason), RunLedger.now()));
              } catch (LeaseLostException e) {
                lost.compareAndSet(null, e);
                waiting.clear();
                break;
              }
              listener.stepFinished(id, ledger.step(id));
              changed = true;
            } else if (ups.stream().allMatch(u -> l.step(u).status() == StepStatus.SUCCEEDED)) {
              waiting.remove(id);
              running.add(id);
              done.submit(() -> {
                try {
                  attempt.accept(call, spec.step(id));
                } catch (LeaseLostException e) {
                  lost.compareAndSet(null, e);
                }
                return id;
              });
            }
          }
        }
        if (running.isEmpty()) {
          if (!waiting.isEmpty()) {
            // Only reachable if the ledger changed under us (another process reset an upstream step).
            throw new StagecraftException(ErrorCategory.INTERNAL, "Cannot schedule steps " + waiting
                + ": their upstream steps neither succeeded nor failed");
          }
          break;
        }
        Future<String> f;
        while ((f = done.poll(1, TimeUnit.SECONDS)) == null) {
          stopIfLost(call, running, lost);
        }
        running.remove(f.get());
      }
      if (lost.get() != null) {
        throw lost.get();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      spark.sparkContext().cancelAllJobs();
      throw new StagecraftException(ErrorCategory.INTERNAL, "Interrupted while running " + runId, e);
    } catch (ExecutionException e) {
      throw new StagecraftException(ErrorCategory.INTERNAL, "Step scheduler failed: " + e.getCause(), e.getCause());
    } finally {
      pool.shutdownNow();
    }
    return store.update(runId, l -> l.withStatus(l.statusFromSteps(), RunLedger.now()));
  }

  /**
   * Once this process's lease is lost, cancels the Spark jobs of the steps it runs: they fail without committing
   * (their ledger update is refused) instead of computing for a run another process holds now.
   */
  private void stopIfLost(RunContext call, Set<String> running, AtomicReference<LeaseLostException> lost) {
    if (lost.get() != null) {
      return;
    }
    try {
      call.store().fence().checkHeld();
    } catch (LeaseLostException e) {
      lost.set(e);
      for (String id : running) {
        spark.sparkContext().cancelJobGroup(Attempts.jobGroup(call.runId(), id));
      }
    }
  }
}
