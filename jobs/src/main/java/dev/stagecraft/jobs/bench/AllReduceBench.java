package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.node.ObjectNode;
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
 * float vectors from the same number of partitions, and against one loopback TCP stream (the limit on one machine).
 */
final class AllReduceBench {
  static final long[] SIZES = {1L << 20, 1L << 24};

  private AllReduceBench() {}

  static void run(SparkSession spark, int workers, double scale, int reps, Consumer<ObjectNode> out) throws Exception {
    JavaSparkContext jsc = new JavaSparkContext(spark.sparkContext());
    for (long base : SIZES) {
      int floats = (int) Math.max(1, Math.round(base * scale));
      // Ours and the limit take milliseconds and vary with where the scheduler puts the threads: many repetitions.
      int fastReps = Math.max(15, 3 * reps);
      Bench.log("allreduce: {} floats × {} workers, {} repetitions ({} for treeAggregate)", floats, workers, fastReps,
          reps);
      double ours = ours(jsc, workers, floats, fastReps);
      double baseline = treeAggregate(jsc, workers, floats, reps);
      double limitGbps = LoopbackLimit.gbps(floats * 4L, fastReps);
      // Bus bandwidth: what each rank sends and receives in a ring all-reduce, 2(n-1)/n times the array.
      long perRank = floats * 4L * 2 * (workers - 1) / workers;
      double busGbps = perRank * 8.0 / ours / 1e9;
      // The same traffic on n concurrent streams with no arithmetic (context: the floor of a ring on these cores).
      double ringTrafficGbps = LoopbackLimit.ringTrafficGbps(perRank, fastReps, workers);
      ObjectNode line = Results.line("allreduce");
      line.putObject("params").put("floats", floats).put("workers", workers).put("reps", fastReps)
          .put("baseline_reps", reps);
      line.putObject("ours").put("seconds", Bench.round(ours, 5)).put("bus_gbps", Bench.round(busGbps, 3));
      line.putObject("baseline").put("name", "treeAggregate").put("seconds", Bench.round(baseline, 5));
      line.putObject("limit").put("name", "loopback-tcp").put("gbps", Bench.round(limitGbps, 3))
          .put("ring_traffic_gbps", Bench.round(ringTrafficGbps, 3))
          .put("of_ring_traffic", Bench.round(busGbps / ringTrafficGbps, 3));
      line.put("speedup", Bench.round(baseline / ours, 3));
      line.put("of_limit", Bench.round(busGbps / limitGbps, 3));
      out.accept(line);
    }
  }

  /** Median seconds of one all-reduce on rank 0 (after a warm-up), checked for the right sum. */
  static double ours(JavaSparkContext jsc, int workers, int floats, int reps) throws Exception {
    List<Integer> ranks = new ArrayList<>();
    for (int i = 0; i < workers; i++) {
      ranks.add(i);
    }
    JavaRDD<Integer> rdd = jsc.parallelize(ranks, workers);
    List<double[]> times = BarrierGroup.run(rdd, "bench-allreduce-" + System.nanoTime(), Duration.ofSeconds(300),
        line -> {}, (comm, rows, reporter) -> {
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
