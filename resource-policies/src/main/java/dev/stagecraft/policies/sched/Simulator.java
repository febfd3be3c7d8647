package dev.stagecraft.policies.sched;

import static java.util.Objects.requireNonNull;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Replays a job trace on a simulated GPU cluster under three policies, in simulated time steps of
 * {@link SimConfig#tickSeconds()}:
 *
 * <ul>
 *   <li><b>(a) static peak</b>: as many on-demand GPUs as the trace's peak demand (every job running from its arrival;
 *       at most the cluster), alive from the first arrival to the last completion; jobs start in arrival order.
 *   <li><b>(b) FIFO, dynamic allocation</b> (Spark's model): a job's executors are asked for when it starts (new ones
 *       take {@code startupSeconds}), and kept {@code idleTimeoutSeconds} after it ends, when a later job may reuse
 *       them; on demand; strict arrival order.
 *   <li><b>(c) Stagecraft cost-aware</b>: earliest deadline first; executors released when the job ends (the step's
 *       application ends); each (re)start picks the market with the lower expected cost that keeps the deadline —
 *       spot only while the slack can absorb a preemption (a checkpoint interval of lost work plus a restart, times
 *       the safety margin); waits for spot capacity while the slack allows, else goes on demand and stays there.
 *       Under contention, a safety net ({@link #costAware}): a job whose slack has fallen below that margin is
 *       <i>urgent</i>, is placed before every other job, and when it does not fit, running jobs with plenty of slack
 *       are evicted to make room for it.
 * </ul>
 *
 * <p>A job's <b>slack</b> at t is what a scheduler knows then: deadline − t − remaining work − one start-up, the
 * time it could still lose if it (re)started now on demand. The policies see no future arrivals and no future spot
 * capacity; they do know every job's duration (the trace's, as the model assumes).
 *
 * <p>Deterministic: the only randomness is in the {@link SpotMarket}'s offsets (a seed). Pure Java, no Spark.
 */
public final class Simulator {
  private static final double EPS = 1e-6;

  private final SimConfig cfg;
  private final SpotMarket spot;

  public Simulator(SimConfig cfg, SpotMarket spot) {
    this.cfg = requireNonNull(cfg, "cfg is null");
    this.spot = requireNonNull(spot, "spot is null");
  }

  /** (a), (b) and (c) on the same jobs. */
  public List<PolicyResult> all(List<SimJob> jobs) {
    return List.of(staticPeak(jobs), fifoDynamic(jobs), costAware(jobs));
  }

  /** One job in flight. */
  private static final class Run {
    final SimJob job;
    double remaining;
    double sinceCheckpoint;
    double startupLeft;
    int zone = -1;
    boolean onDemandOnly;

    Run(SimJob job) {
      this.job = job;
      this.remaining = job.duration();
    }

    boolean onSpot() {
      return zone >= 0;
    }
  }

  /** Totals a policy accumulates. */
  private final class Books {
    final String policy;
    double onDemandGpuSeconds;
    double spotGpuSeconds;
    double cost;
    double busyGpuSeconds;
    double lostGpuSeconds;
    int preemptions;
    int evictions;
    int spotStarts;
    final Map<Integer, Double> completions = new HashMap<>();

    Books(String policy) {
      this.policy = policy;
    }

    /** Bills GPU-seconds on a market; the cost is added here, one charge at a time, not derived at the end. */
    void bill(double gpuSeconds, boolean onSpot) {
      if (onSpot) {
        spotGpuSeconds += gpuSeconds;
        cost += gpuSeconds / 3600 * cfg.spotGpuHour();
      } else {
        onDemandGpuSeconds += gpuSeconds;
        cost += gpuSeconds / 3600 * cfg.onDemandGpuHour();
      }
    }

    PolicyResult result(List<SimJob> jobs) {
      double[] jct = new double[jobs.size()];
      TreeSet<Integer> missed = new TreeSet<>();
      double first = Double.POSITIVE_INFINITY;
      double last = 0;
      for (int i = 0; i < jobs.size(); i++) {
        SimJob j = jobs.get(i);
        double done = completions.get(j.id());
        jct[i] = done - j.arrival();
        if (done > j.deadline() + EPS) {
          missed.add(j.id());
        }
        first = Math.min(first, j.arrival());
        last = Math.max(last, done);
      }
      Arrays.sort(jct);
      double mean = Arrays.stream(jct).average().orElse(0);
      double p99 = jct.length == 0 ? 0 : jct[(int) Math.ceil(0.99 * jct.length) - 1];
      return new PolicyResult(policy, cost, onDemandGpuSeconds / 3600, spotGpuSeconds / 3600,
          busyGpuSeconds / 3600, lostGpuSeconds / 3600, mean, p99, jobs.isEmpty() ? 0 : last - first, preemptions,
          evictions, spotStarts, missed, completions);
    }
  }

  private List<SimJob> byArrival(List<SimJob> jobs) {
    List<SimJob> sorted = new ArrayList<>(jobs);
    sorted.sort(Comparator.comparingDouble(SimJob::arrival).thenComparingInt(SimJob::id));
    for (SimJob j : sorted) {
      if (j.gpus() > cfg.clusterGpus()) {
        throw dev.stagecraft.spi.StagecraftException.user("Cannot replay job %d: it needs %d GPUs and the cluster "
            + "has %d (expected a cluster at least as large as the largest job)", j.id(), j.gpus(),
            cfg.clusterGpus());
      }
    }
    return sorted;
  }

  private double tickAtOrAfter(double t) {
    return Math.ceil(t / cfg.tickSeconds() - EPS) * cfg.tickSeconds();
  }

  /** Most GPUs in use at once if every job ran from its arrival for its duration, capped at the cluster. */
  public int peakDemand(List<SimJob> jobs) {
    double[][] events = new double[jobs.size() * 2][];
    int k = 0;
    for (SimJob j : jobs) {
      events[k++] = new double[] {j.arrival(), j.gpus()};
      events[k++] = new double[] {j.arrival() + j.duration(), -j.gpus()};
    }
    // ends before starts at the same instant
    Arrays.sort(events, Comparator.<double[]>comparingDouble(e -> e[0]).thenComparingDouble(e -> e[1]));
    int now = 0;
    int peak = 0;
    for (double[] e : events) {
      now += (int) e[1];
      peak = Math.max(peak, now);
    }
    return Math.min(peak, cfg.clusterGpus());
  }

  /** Advances a started job by up to one tick from {@code t}; returns its completion time, or NaN. */
  private double advance(Run r, double t, Books books) {
    double left = cfg.tickSeconds();
    double s = Math.min(r.startupLeft, left);
    r.startupLeft -= s;
    left -= s;
    double w = Math.min(r.remaining, left);
    r.remaining -= w;
    r.sinceCheckpoint += w;
    while (r.sinceCheckpoint >= cfg.checkpointSeconds() - EPS) {
      r.sinceCheckpoint = Math.max(0, r.sinceCheckpoint - cfg.checkpointSeconds());
    }
    books.busyGpuSeconds += w * r.job.gpus();
    double used = s + w;
    if (r.remaining <= EPS) {
      books.completions.put(r.job.id(), t + used);
      return used;
    }
    return Double.NaN;
  }

  /** (a) Static peak provisioning: the GPUs are billed whether busy or not. */
  public PolicyResult staticPeak(List<SimJob> input) {
    List<SimJob> jobs = byArrival(input);
    Books books = new Books("static-peak");
    if (jobs.isEmpty()) {
      return books.result(jobs);
    }
    int provisioned = peakDemand(jobs);
    int free = provisioned;
    Deque<Run> queue = new ArrayDeque<>();
    List<Run> running = new ArrayList<>();
    int next = 0;
    double t = tickAtOrAfter(jobs.get(0).arrival());
    while (books.completions.size() < jobs.size()) {
      if (running.isEmpty() && queue.isEmpty() && next < jobs.size()) {
        t = Math.max(t, tickAtOrAfter(jobs.get(next).arrival()));
      }
      while (next < jobs.size() && jobs.get(next).arrival() <= t + EPS) {
        queue.add(new Run(jobs.get(next++)));
      }
      while (!queue.isEmpty() && queue.peek().job.gpus() <= free) {
        Run r = queue.poll();
        free -= r.job.gpus();
        running.add(r);
      }
      for (Iterator<Run> it = running.iterator(); it.hasNext(); ) {
        Run r = it.next();
        if (!Double.isNaN(advance(r, t, books))) {
          free += r.job.gpus();
          it.remove();
        }
      }
      t += cfg.tickSeconds();
    }
    double end = books.completions.values().stream().mapToDouble(Double::doubleValue).max().orElseThrow();
    books.bill(provisioned * (end - jobs.get(0).arrival()), false);
    return books.result(jobs);
  }

  /** (b) FIFO with Spark-style dynamic allocation: idle executors are kept (and billed) until their idle timeout. */
  public PolicyResult fifoDynamic(List<SimJob> input) {
    List<SimJob> jobs = byArrival(input);
    Books books = new Books("fifo-dynamic");
    Deque<Run> queue = new ArrayDeque<>();
    List<Run> running = new ArrayList<>();
    Deque<Double> idleSince = new ArrayDeque<>(); // one entry per idle GPU, oldest first
    int alive = 0;
    int next = 0;
    double t = jobs.isEmpty() ? 0 : tickAtOrAfter(jobs.get(0).arrival());
    while (books.completions.size() < jobs.size()) {
      if (running.isEmpty() && queue.isEmpty() && next < jobs.size()) {
        t = Math.max(t, tickAtOrAfter(jobs.get(next).arrival()));
      }
      while (!idleSince.isEmpty() && idleSince.peekFirst() + cfg.idleTimeoutSeconds() <= t + EPS) {
        idleSince.pollFirst();
        books.bill(cfg.idleTimeoutSeconds(), false);
        alive--;
      }
      while (next < jobs.size() && jobs.get(next).arrival() <= t + EPS) {
        queue.add(new Run(jobs.get(next++)));
      }
      while (!queue.isEmpty()) {
        Run r = queue.peek();
        int reuse = Math.min(idleSince.size(), r.job.gpus());
        int fresh = r.job.gpus() - reuse;
        if (alive + fresh > cfg.clusterGpus()) {
          break;
        }
        queue.poll();
        for (int i = 0; i < reuse; i++) {
          books.bill(t - idleSince.pollLast(), false); // the most recently idle first
        }
        alive += fresh;
        r.startupLeft = fresh > 0 ? cfg.startupSeconds() : 0;
        running.add(r);
      }
      for (Iterator<Run> it = running.iterator(); it.hasNext(); ) {
        Run r = it.next();
        double used = advance(r, t, books);
        if (Double.isNaN(used)) {
          books.bill(cfg.tickSeconds() * r.job.gpus(), false);
        } else {
          books.bill(used * r.job.gpus(), false);
          for (int i = 0; i < r.job.gpus(); i++) {
            idleSince.addLast(t + used);
          }
          it.remove();
        }
      }
      t += cfg.tickSeconds();
    }
    // after the last job, the idle executors live out their timeout
    books.bill(idleSince.size() * cfg.idleTimeoutSeconds(), false);
    return books.result(jobs);
  }

  /** What (c) does with a queued job at time t. */
  private enum Choice {
    ON_DEMAND,
    SPOT,
    WAIT
  }

  /** Seconds to spare if the job (re)started now on demand and ran to the end without interruption. */
  private double slack(Run r, double t) {
    return r.job.deadline() - t - r.remaining - cfg.startupSeconds();
  }

  /** The safety net: the slack a job keeps in reserve, one preemption's worst cost times the safety margin. */
  private double safetyNet() {
    return cfg.safetyMargin() * cfg.preemptionSeconds();
  }

  private boolean canAbsorbPreemption(Run r, double t) {
    return slack(r, t) >= safetyNet();
  }

  /** (c)'s order classes: urgent jobs first, then the rest, then jobs that can no longer meet their deadline. */
  private static final int URGENT = 0;
  private static final int NORMAL = 1;
  private static final int LATE = 2;

  private int urgency(Run r, double t) {
    double s = slack(r, t);
    return s < 0 ? LATE : s < safetyNet() ? URGENT : NORMAL;
  }

  /**
   * Running jobs to evict so that {@code need} more GPUs are free: only jobs whose slack, once they lose their work
   * since the last checkpoint, is still at least twice the safety net (so they are far from urgent themselves), the
   * most slack first. Empty when they cannot free enough: then nobody is evicted.
   */
  private List<Run> victims(List<Run> running, int need, double t) {
    List<Run> eligible = new ArrayList<>();
    for (Run v : running) {
      if (slack(v, t) - v.sinceCheckpoint >= 2 * safetyNet()) {
        eligible.add(v);
      }
    }
    eligible.sort(Comparator.<Run>comparingDouble(v -> -(slack(v, t) - v.sinceCheckpoint))
        .thenComparingInt(v -> v.job.id()));
    int freed = 0;
    int k = 0;
    while (k < eligible.size() && freed < need) {
      freed += eligible.get(k++).job.gpus();
    }
    return freed < need ? List.of() : eligible.subList(0, k);
  }

  /** Stops a running job of (c): it loses its work since the last checkpoint and will restart from there. */
  private static void stop(Run r, Books books) {
    books.lostGpuSeconds += r.sinceCheckpoint * r.job.gpus();
    r.remaining += r.sinceCheckpoint;
    r.sinceCheckpoint = 0;
    r.zone = -1;
  }

  /**
   * The market for a (re)start at t. Expected spot cost: the remaining work and a restart, plus per expected
   * preemption (remaining work ÷ the zone's mean time between preemptions) half a checkpoint interval of lost work
   * and a restart, at the spot price; against the remaining work and a restart on demand.
   */
  private Choice choose(Run r, double t) {
    if (r.onDemandOnly || spot.zoneCount() == 0) {
      return Choice.ON_DEMAND;
    }
    if (!canAbsorbPreemption(r, t)) {
      r.onDemandOnly = true; // a step whose deadline cannot absorb a preemption stays on demand
      return Choice.ON_DEMAND;
    }
    int zone = spot.bestAvailable(t);
    if (zone < 0) {
      // no capacity now: wait a tick if the slack still absorbs a preemption afterwards
      if (slack(r, t + cfg.tickSeconds()) >= cfg.safetyMargin() * cfg.preemptionSeconds()) {
        return Choice.WAIT;
      }
      r.onDemandOnly = true;
      return Choice.ON_DEMAND;
    }
    double mtbp = spot.zone(zone).meanSecondsBetweenPreemptions();
    double expectedPreemptions = Double.isInfinite(mtbp) ? 0 : r.remaining / mtbp;
    double spotCost = cfg.spotGpuHour() * (r.remaining + cfg.startupSeconds()
        + expectedPreemptions * (cfg.checkpointSeconds() / 2 + cfg.startupSeconds()));
    double onDemandCost = cfg.onDemandGpuHour() * (r.remaining + cfg.startupSeconds());
    if (spotCost >= onDemandCost) {
      return Choice.ON_DEMAND;
    }
    r.zone = zone;
    return Choice.SPOT;
  }

  /**
   * (c) Stagecraft's cost-aware policy. Each tick, in this order:
   *
   * <ol>
   *   <li>jobs on spot in a zone that lost its capacity are preempted (they lose their work since the last
   *       checkpoint) and queue again;
   *   <li>the queue is ordered: <b>urgent</b> jobs (0 ≤ slack &lt; the safety net, {@link SimConfig#safetyMargin()}
   *       × {@link SimConfig#preemptionSeconds()}), then the others, then <b>late</b> jobs (slack &lt; 0: they
   *       miss whatever happens, so they no longer delay anyone); by deadline within each class;
   *   <li>jobs start in that order while they fit; nothing jumps ahead of a job that does not fit. An urgent job that
   *       does not fit evicts running jobs that keep at least twice the safety net of slack after losing their work
   *       since the last checkpoint (most slack first), if they free enough GPUs; the evicted queue again. A starting
   *       job takes spot or on demand as {@code choose} says (an urgent job always takes on demand), or keeps
   *       waiting for spot capacity, not holding GPUs;
   *   <li>running jobs advance; one on spot whose slack has fallen below the safety net moves to on demand at its next
   *       checkpoint (it queues again, urgent, so among the first to take the GPUs it left).
   * </ol>
   *
   * <p>So a job's deadline is at risk only when jobs that cannot be evicted (urgent ones, and others too close to
   * their own deadline) fill the cluster, or when its slack is shorter than a start-up to begin with.
   */
  public PolicyResult costAware(List<SimJob> input) {
    List<SimJob> jobs = byArrival(input);
    Books books = new Books("stagecraft-cost-aware");
    List<Run> queue = new ArrayList<>();
    List<Run> running = new ArrayList<>();
    int alive = 0;
    int next = 0;
    double t = jobs.isEmpty() ? 0 : tickAtOrAfter(jobs.get(0).arrival());
    while (books.completions.size() < jobs.size()) {
      if (running.isEmpty() && queue.isEmpty() && next < jobs.size()) {
        t = Math.max(t, tickAtOrAfter(jobs.get(next).arrival()));
      }
      // spot capacity gone: the job loses its work since the last checkpoint and queues again
      for (Iterator<Run> it = running.iterator(); it.hasNext(); ) {
        Run r = it.next();
        if (r.onSpot() && !spot.available(r.zone, t)) {
          books.preemptions++;
          stop(r, books);
          alive -= r.job.gpus();
          it.remove();
          queue.add(r);
        }
      }
      while (next < jobs.size() && jobs.get(next).arrival() <= t + EPS) {
        queue.add(new Run(jobs.get(next++)));
      }
      final double now = t;
      queue.sort(Comparator.<Run>comparingInt(r -> urgency(r, now)).thenComparingDouble(r -> r.job.deadline())
          .thenComparingDouble(r -> r.job.arrival()).thenComparingInt(r -> r.job.id()));
      List<Run> evicted = new ArrayList<>();
      for (Iterator<Run> it = queue.iterator(); it.hasNext(); ) {
        Run r = it.next();
        if (alive + r.job.gpus() > cfg.clusterGpus()) {
          List<Run> victims = urgency(r, t) == URGENT
              ? victims(running, alive + r.job.gpus() - cfg.clusterGpus(), t) : List.of();
          if (victims.isEmpty()) {
            break; // nothing later jumps ahead of a job that does not fit
          }
          for (Run v : List.copyOf(victims)) {
            books.evictions++;
            stop(v, books);
            alive -= v.job.gpus();
            running.remove(v);
            evicted.add(v);
          }
        }
        Choice c = choose(r, t);
        if (c == Choice.WAIT) {
          continue;
        }
        if (c == Choice.SPOT) {
          books.spotStarts++;
        }
        it.remove();
        alive += r.job.gpus();
        r.startupLeft = cfg.startupSeconds();
        running.add(r);
      }
      queue.addAll(evicted);
      for (Iterator<Run> it = running.iterator(); it.hasNext(); ) {
        Run r = it.next();
        double before = r.sinceCheckpoint;
        double remainingBefore = r.remaining;
        double used = advance(r, t, books);
        boolean done = !Double.isNaN(used);
        books.bill((done ? used : cfg.tickSeconds()) * r.job.gpus(), r.onSpot());
        if (done) {
          alive -= r.job.gpus();
          it.remove();
          continue;
        }
        boolean checkpointed = r.sinceCheckpoint < before || remainingBefore - r.remaining >= cfg.checkpointSeconds();
        if (r.onSpot() && checkpointed && !canAbsorbPreemption(r, t + cfg.tickSeconds())) {
          // the slack shrank below one preemption: move to on demand, losing only the work since the checkpoint
          stop(r, books);
          r.onDemandOnly = true;
          alive -= r.job.gpus();
          it.remove();
          queue.add(r);
        }
      }
      t += cfg.tickSeconds();
    }
    return books.result(jobs);
  }
}
