package dev.stagecraft.jobs.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CyclicBarrier;

/**
 * Runs the same work on N threads at once and times the part they all run together: from the moment every thread has
 * finished its set-up to the moment the last one is done. For the no-Spark limits of the benchmarks.
 */
final class Concurrently {
  /** What each thread does: set up, {@code gate.start()}, the timed work, {@code gate.end()}, clean up. */
  @FunctionalInterface
  interface Body {
    void run(int thread, Gate gate) throws Exception;
  }

  /** Where a thread's timed part begins and ends; every thread must pass both. */
  static final class Gate {
    private final CyclicBarrier start;
    private final CyclicBarrier end;

    private Gate(CyclicBarrier start, CyclicBarrier end) {
      this.start = start;
      this.end = end;
    }

    void start() throws InterruptedException, BrokenBarrierException {
      start.await();
    }

    void end() throws InterruptedException, BrokenBarrierException {
      end.await();
    }
  }

  private Concurrently() {}

  /** Seconds the {@code threads} copies of {@code body} ran their timed parts together. */
  static double seconds(String name, int threads, Body body) throws Exception {
    CyclicBarrier start = new CyclicBarrier(threads + 1);
    CyclicBarrier end = new CyclicBarrier(threads + 1);
    Gate gate = new Gate(start, end);
    List<CompletableFuture<Void>> all = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      int thread = t;
      all.add(CompletableFuture.runAsync(() -> {
        try {
          body.run(thread, gate);
        } catch (Exception e) {
          start.reset(); // a thread that fails must not leave the others, or the caller, waiting for it
          end.reset();
          throw new IllegalStateException(e);
        }
      }, r -> {
        Thread th = new Thread(r, name + "-" + thread);
        th.setDaemon(true);
        th.start();
      }));
    }
    long t0;
    long t1;
    try {
      start.await();
      t0 = System.nanoTime();
      end.await();
      t1 = System.nanoTime();
    } catch (BrokenBarrierException e) {
      for (CompletableFuture<Void> f : all) {
        f.join(); // throws the failing thread's exception
      }
      throw e;
    }
    for (CompletableFuture<Void> f : all) {
      f.get();
    }
    return (t1 - t0) / 1e9;
  }
}
