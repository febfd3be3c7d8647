package dev.stagecraft.jobs.bench;

import dev.stagecraft.training.pipeline.PipeSchedule;
import java.util.List;

/**
 * A pipeline's steps replayed on paper, to say what bubble a schedule must leave for stages as they really are: each
 * stage's own forward and backward time per micro-batch (unequal stages), transfers free and instant, and optionally
 * the cores shared (a stage computing while others compute runs slower by its measured factor). The theory's
 * {@code (P − 1) / (M + P − 1)} is the special case of equal stages on cores of their own.
 *
 * <p>The dependencies are {@code PipelineLoop}'s: a forward needs the previous stage's forward of the same
 * micro-batch, a backward the next stage's backward of it, each stage runs its ops in the schedule's order, and a
 * stage starts its next step only once the next stage has ended this one (the loss is passed back stage by stage). A
 * stage waits whenever its next op is not ready; its bubble is its waiting time ÷ (computing + waiting), as the loop
 * measures it.
 */
final class PipelineSim {
  private PipelineSim() {}

  /**
   * One stage's times, in seconds.
   *
   * @param forward one micro-batch's forward
   * @param backward one micro-batch's backward
   * @param send sending one micro-batch's activations or gradient to a neighbour (the sender is busy meanwhile)
   * @param stepWork the work between two steps once the loss has come back (the stage's all-reduce and optimizer)
   * @param slowdown the factor by which the stage's work slows while every stage works at once (1: a core of its
   *     own); with {@code k} of {@code P} stages working it is interpolated, {@code 1 + (slowdown − 1)(k − 1)/(P − 1)}
   */
  record StageTimes(double forward, double backward, double send, double stepWork, double slowdown) {
    /** Forward and backward only, on a core of its own. */
    static StageTimes compute(double forward, double backward) {
      return new StageTimes(forward, backward, 0, 0, 1);
    }
  }

  /** Per stage: seconds computing and sending, waiting, and between steps; and the whole run's seconds. */
  record Result(double[] busySeconds, double[] waitSeconds, double[] stepWorkSeconds, double seconds) {
    /** Waiting ÷ (computing + sending + waiting), as {@code PipelineLoop} measures it. */
    double bubble(int stage) {
      double all = busySeconds[stage] + waitSeconds[stage];
      return all > 0 ? waitSeconds[stage] / all : 0;
    }

    double meanBubble() {
      double sum = 0;
      for (int s = 0; s < busySeconds.length; s++) {
        sum += bubble(s);
      }
      return sum / busySeconds.length;
    }
  }

  /** Replays {@code steps} steps of {@code microBatches} under {@code schedule}; {@code stages} by stage index. */
  static Result run(PipeSchedule schedule, int microBatches, int steps, List<StageTimes> stages) {
    int p = stages.size();
    if (p < 1 || steps < 1 || microBatches < 1) {
      throw new IllegalArgumentException("Invalid simulation: " + p + " stages, " + steps + " steps, "
          + microBatches + " micro-batches (expected at least one of each)");
    }
    List<List<PipeSchedule.Op>> ops = new java.util.ArrayList<>();
    for (int s = 0; s < p; s++) {
      ops.add(schedule.ops(s, p, microBatches));
    }
    boolean[][][] forwardDone = new boolean[steps][p][microBatches];
    boolean[][][] backwardDone = new boolean[steps][p][microBatches];
    int[] step = new int[p]; // the step each stage is in (= steps whose ops it has run)
    int[] next = new int[p]; // its next op in that step
    boolean[] owesStepWork = new boolean[p]; // between steps, the loss back, its step work not yet run
    boolean[] running = new boolean[p];
    boolean[] runningStepWork = new boolean[p];
    double[] remaining = new double[p]; // seconds of work left in what it runs, at full speed
    double[] busy = new double[p];
    double[] wait = new double[p];
    double[] between = new double[p];
    double now = 0;
    while (true) {
      boolean any = false;
      for (int s = 0; s < p; s++) {
        if (step[s] < steps && !running[s] && ready(s, p, ops.get(s).get(next[s]), next[s], owesStepWork[s], step,
            forwardDone, backwardDone)) {
          running[s] = true;
          StageTimes t = stages.get(s);
          if (owesStepWork[s]) {
            runningStepWork[s] = true;
            remaining[s] = t.stepWork();
          } else {
            PipeSchedule.Op op = ops.get(s).get(next[s]);
            boolean sends = op.forward() ? s < p - 1 : s > 0;
            remaining[s] = (op.forward() ? t.forward() : t.backward()) + (sends ? t.send() : 0);
          }
        }
        any |= step[s] < steps;
      }
      if (!any) {
        break;
      }
      int working = 0;
      for (int s = 0; s < p; s++) {
        working += running[s] ? 1 : 0;
      }
      if (working == 0) {
        throw new IllegalStateException("The simulated pipeline is stuck at " + now + " s (a schedule whose ops "
            + "wait on each other)");
      }
      double[] rate = new double[p];
      double dt = Double.POSITIVE_INFINITY;
      for (int s = 0; s < p; s++) {
        if (running[s]) {
          double factor = p == 1 ? 1 : 1 + (stages.get(s).slowdown() - 1) * (working - 1) / (p - 1);
          rate[s] = 1 / factor;
          dt = Math.min(dt, Math.max(0, remaining[s]) / rate[s]);
        }
      }
      now += dt;
      for (int s = 0; s < p; s++) {
        if (running[s]) {
          (runningStepWork[s] ? between : busy)[s] += dt;
          remaining[s] -= dt * rate[s];
        } else if (step[s] < steps) {
          wait[s] += dt;
        }
      }
      for (int s = 0; s < p; s++) {
        StageTimes t = stages.get(s);
        if (running[s] && remaining[s] <= 1e-12 * Math.max(1, t.forward() + t.backward() + t.stepWork())) {
          running[s] = false;
          if (runningStepWork[s]) {
            runningStepWork[s] = false;
            owesStepWork[s] = false;
            continue;
          }
          PipeSchedule.Op op = ops.get(s).get(next[s]);
          (op.forward() ? forwardDone : backwardDone)[step[s]][s][op.microBatch()] = true;
          if (++next[s] == ops.get(s).size()) {
            next[s] = 0;
            step[s]++;
            owesStepWork[s] = t.stepWork() > 0;
          }
        }
      }
    }
    return new Result(busy, wait, between, now);
  }

  /**
   * Whether stage {@code s} can go on with {@code op}, op number {@code index} of its current step (or, first, with
   * the work between steps).
   */
  private static boolean ready(int s, int p, PipeSchedule.Op op, int index, boolean stepWork, int[] step,
      boolean[][][] forwardDone, boolean[][][] backwardDone) {
    int k = step[s];
    if (index == 0 && k > 0 && s < p - 1 && step[s + 1] < k) {
      return false; // the next stage has not passed back the previous step's loss yet
    }
    if (stepWork) {
      return true;
    }
    if (op.forward()) {
      return s == 0 || forwardDone[k][s - 1][op.microBatch()];
    }
    return s == p - 1 || backwardDone[k][s + 1][op.microBatch()];
  }
}
