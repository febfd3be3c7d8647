package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.training.collective.FrameIntegrity;
import dev.stagecraft.training.spark.BarrierGroup;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * Our ring all-reduce between the barrier tasks of one stage, against Spark's {@code treeAggregate} summing the same
 * float vectors from the same number of partitions, and against loopback TCP (the limit on one machine), at 2, 3 and
 * 4 workers by default. Ours runs once per frame integrity mode ({@code none}, {@code mac}, {@code encrypt} by
 * default): {@code ours} is the default mode's, and {@code integrity} gives each mode's time and its cost over
 * {@code none}.
 */
final class AllReduceBench {
  static final long[] SIZES = {1L << 20, 1L << 24};
  /** Ring sizes when {@code --workers} is not given: the ring's traffic per rank, 2(n−1)/n, grows with n. */
  static final List<Integer> DEFAULT_WORKERS = List.of(2, 3, 4);

  private AllReduceBench() {}

  /** Frame integrity modes measured when {@code --integrity} is not given. */
  static final List<FrameIntegrity> DEFAULT_MODES =
      List.of(FrameIntegrity.NONE, FrameIntegrity.MAC, FrameIntegrity.ENCRYPT);

  static void run(SparkSession spark, List<Integer> ringSizes, List<FrameIntegrity> modes, double scale, int reps,
      Consumer<ObjectNode> out) throws Exception {
    JavaSparkContext jsc = new JavaSparkContext(spark.sparkContext());
    for (int workers : ringSizes) {
      for (long base : SIZES) {
        int floats = (int) Math.max(1, Math.round(base * scale));
        out.accept(point(jsc, workers, floats, modes, reps));
      }
    }
  }

  /** One line: {@code floats} summed over {@code workers} ranks by ours (each mode), the baseline and the limits. */
  private static ObjectNode point(JavaSparkContext jsc, int workers, int floats, List<FrameIntegrity> modes, int reps)
      throws Exception {
    // Ours and the limit take milliseconds and vary with where the scheduler puts the threads: many repetitions.
    int fastReps = Math.max(15, 3 * reps);
    int cores = Runtime.getRuntime().availableProcessors();
    Bench.log("allreduce: {} floats × {} workers on {} cores, {} repetitions ({} for treeAggregate)", floats, workers,
        cores, fastReps, reps);
    java.util.Map<FrameIntegrity, Double> byMode = new java.util.LinkedHashMap<>();
    for (FrameIntegrity mode : modes) {
      byMode.put(mode, ours(jsc, workers, floats, mode, fastReps));
    }
    FrameIntegrity main = byMode.containsKey(FrameIntegrity.DEFAULT) ? FrameIntegrity.DEFAULT : modes.get(0);
    double ours = byMode.get(main);
    double baseline = treeAggregate(jsc, workers, floats, reps);
    long bytes = floats * 4L;
    double limitGbps = LoopbackLimit.gbps(bytes, fastReps);
    // The ring's standard bus bandwidth: algorithm bandwidth (array bytes ÷ time) × 2(n−1)/n, what each rank sends
    // and receives in a ring all-reduce (reduce-scatter, then all-gather), comparable across ring sizes.
    double busFactor = 2.0 * (workers - 1) / workers;
    double algGbps = bytes * 8 / ours / 1e9;
    double busGbps = algGbps * busFactor;
    // The same traffic on n concurrent streams with no arithmetic (context: the floor of a ring on these cores).
    double ringTrafficGbps = LoopbackLimit.ringTrafficGbps(Math.round(bytes * busFactor), fastReps, workers);
    ObjectNode line = Results.line("allreduce");
    line.putObject("params").put("floats", floats).put("workers", workers).put("cores", cores)
        .put("master", jsc.master()).put("reps", fastReps).put("baseline_reps", reps).put("integrity", main.key());
    line.putObject("ours").put("seconds", Bench.round(ours, 5)).put("alg_gbps", Bench.round(algGbps, 3))
        .put("bus_gbps", Bench.round(busGbps, 3))
        .put("timed", "inside one connected group (rendezvous and connections made once, untimed): rank 0's median "
            + "all-reduce after a warm-up, each started after a barrier");
    ObjectNode modesNode = line.putObject("integrity");
    Double none = byMode.get(FrameIntegrity.NONE);
    byMode.forEach((mode, seconds) -> {
      ObjectNode m = modesNode.putObject(mode.key()).put("seconds", Bench.round(seconds, 5))
          .put("bus_gbps", Bench.round(bytes * 8 / seconds / 1e9 * busFactor, 3));
      if (none != null) {
        m.put("cost_ratio", Bench.round(seconds / none, 3)); // over unprotected frames
      }
    });
    line.putObject("baseline").put("name", "treeAggregate").put("seconds", Bench.round(baseline, 5))
        .put("timed", "one Spark job per all-reduce (scheduling included), median after a warm-up");
    line.putObject("limit").put("name", "loopback-tcp").put("gbps", Bench.round(limitGbps, 3))
        .put("how", "one stream, blocking channels, direct buffers, the ring's " + LoopbackLimit.CHUNK_BYTES
            + "-byte chunks and " + LoopbackLimit.SOCKET_BUFFER_BYTES + "-byte socket buffers")
        .put("ring_traffic_gbps", Bench.round(ringTrafficGbps, 3))
        .put("ring_traffic", workers + " concurrent streams in a ring, each carrying 2(n−1)/n × the array")
        .put("of_ring_traffic", Bench.round(busGbps / ringTrafficGbps, 3));
    line.put("speedup", Bench.round(baseline / ours, 3));
    line.put("of_limit", Bench.round(busGbps / limitGbps, 3));
    return line;
  }

  /** Median seconds of one all-reduce on rank 0 (after a warm-up) under {@code mode}, checked for the right sum. */
  static double ours(JavaSparkContext jsc, int workers, int floats, FrameIntegrity mode, int reps) throws Exception {
    List<Integer> ranks = new ArrayList<>();
    for (int i = 0; i < workers; i++) {
      ranks.add(i);
    }
    JavaRDD<Integer> rdd = jsc.parallelize(ranks, workers);
    List<double[]> times = BarrierGroup.run(rdd, "bench-allreduce-" + System.nanoTime(), Duration.ofSeconds(300),
        mode, line -> {}, (comm, subgroups, rows, reporter) -> {
          float[] data = new float[floats];
          double[] t = new double[reps];
          for (int r = -1; r < reps; r++) {
            java.util.Arrays.fill(data, comm.rank() + 1);
            comm.barrier();
            long start = System.nanoTime();
            comm.allReduceSum(data);
            if (r >= 0) {
              t[r] = (System.nanoTime() - start) / 1e9;
            }
          }
          float expected = comm.worldSize() * (comm.worldSize() + 1) / 2f;
          if (data[0] != expected || data[floats - 1] != expected) {
            throw new IllegalStateException("all-reduce gave " + data[0] + ", expected " + expected);
          }
          return t;
        });
    return Bench.median(times.get(0));
  }

  /** Median seconds of Spark's treeAggregate over cached per-partition vectors of the same size. */
  static double treeAggregate(JavaSparkContext jsc, int workers, int floats, int reps) {
    List<Integer> ranks = new ArrayList<>();
    for (int i = 0; i < workers; i++) {
      ranks.add(i);
    }
    JavaRDD<float[]> vectors = jsc.parallelize(ranks, workers).map(r -> {
      float[] v = new float[floats];
      java.util.Arrays.fill(v, r + 1);
      return v;
    }).cache();
    vectors.count();
    double[] t = new double[reps];
    try {
      for (int r = -1; r < reps; r++) {
        long start = System.nanoTime();
        float[] sum = vectors.treeAggregate(new float[floats], (acc, v) -> {
          for (int i = 0; i < v.length; i++) {
            acc[i] += v[i];
          }
          return acc;
        }, (a, b) -> {
          for (int i = 0; i < b.length; i++) {
            a[i] += b[i];
          }
          return a;
        }, 2);
        if (r >= 0) {
          t[r] = (System.nanoTime() - start) / 1e9;
        }
        if (sum[0] != workers * (workers + 1) / 2f) {
          throw new IllegalStateException("treeAggregate gave " + sum[0]);
        }
      }
    } finally {
      vectors.unpersist(true);
    }
    return Bench.median(t);
  }
}
