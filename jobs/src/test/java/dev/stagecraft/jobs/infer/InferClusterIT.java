package dev.stagecraft.jobs.infer;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.inference.spark.InferStep;
import dev.stagecraft.jobs.engine.Engine;
import dev.stagecraft.jobs.engine.EngineListener;
import dev.stagecraft.jobs.ledger.StepRecord;
import dev.stagecraft.jobs.ledger.StepStatus;
import dev.stagecraft.jobs.spec.StepKinds;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spark.SparkShim;
import dev.stagecraft.testing.StandaloneCluster;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.spark.TaskContext;
import org.apache.spark.scheduler.AccumulableInfo;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.SparkListenerTaskStart;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.ExpressionInfo;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The infer step on a real standalone cluster: a master and two workers (their own JVMs), each with 4 task slots and
 * one fake GPU, executors asking for that GPU and tasks for a quarter of it ({@code spark.task.resource.gpu.amount
 * =0.25}): up to four tasks of an executor share its GPU address.
 */
class InferClusterIT {
  static final int FEATURES = ScoringData.FEATURES;
  @TempDir static Path dir;
  static StandaloneCluster cluster;
  static SparkSession spark;

  @BeforeAll
  static void start() throws Exception {
    cluster = StandaloneCluster.start(dir, 2, 4, 1);
    spark = cluster.session("infer-cluster-it", 4, true)
        .config("spark.task.resource.gpu.amount", "0.25")
        .config("spark.sql.extensions", FailFirstAttempt.Functions.class.getName())
        .getOrCreate();
  }

  @AfterAll
  static void stop() {
    if (spark != null) {
      spark.stop();
    }
    if (cluster != null) {
      cluster.close();
    }
  }

  static final long BAD_EVERY = ScoringData.BAD_EVERY;

  static String input(String name, long rows, int partitions) {
    String p = dir.resolve(name).toUri().toString();
    ScoringData.input(spark, p, rows, partitions);
    return p;
  }

  static long badRows(long rows) {
    return ScoringData.badRows(rows);
  }

  static Path mlp(String name, long seed) throws Exception {
    return ScoringData.mlp(dir.resolve(name), seed);
  }

  static WorkflowSpec workflow(String name, Path bundle, String input) throws Exception {
    return workflow(name, bundle, input, "");
  }

  /** @param more further fields of the step, YAML, each line indented by 4 */
  static WorkflowSpec workflow(String name, Path bundle, String input, String more) throws Exception {
    Path f = dir.resolve(name + ".yaml");
    Files.writeString(f, """
        name: %s
        steps:
          - id: score
            kind: infer
            model: "%s"
            input: "%s"
            id_columns: [id]
            batch_size: 1024
        %s""".formatted(name, bundle.toUri(), input, more));
    StepKinds kinds = StepKinds.discover();
    return new WorkflowLoader(kinds).load(f);
  }

  /** Runs the workflow with {@code listener} listening to the cluster's Spark events meanwhile. */
  static StepRecord run(WorkflowSpec spec, Engine.Options options, SparkListener listener) throws Exception {
    spark.sparkContext().addSparkListener(listener);
    try {
      return run(spec, options);
    } finally {
      spark.sparkContext().removeSparkListener(listener);
    }
  }

  static StepRecord run(WorkflowSpec spec, Engine.Options options) throws Exception {
    StepKinds kinds = StepKinds.discover();
    return new Engine(spark, kinds, EngineListener.NONE)
        .run(spec, options.withWorkspace(dir.resolve("ws").toString())).step("score");
  }

  /** Exactly once (see {@link ScoringData#assertExactlyOnce}), and the step's row counts. */
  static void assertExactlyOnce(StepRecord score, long rows) {
    assertThat(score.status()).as(String.valueOf(score.error())).isEqualTo(StepStatus.SUCCEEDED);
    ScoringData.assertExactlyOnce(spark, score.outputs().get("output").uri(), score.outputs().get("quarantine").uri(),
        rows);
    assertThat(score.metrics()).containsEntry("rows", (double) rows).containsEntry("bad_rows", (double) badRows(rows));
  }

  @Test
  void anExecutorKilledMidStepLosesAndDuplicatesNoRowAndARerunOfTheRunIdNeither() throws Exception {
    long rows = 400_000;
    String input = input("kill-input", rows, 24);
    WorkflowSpec spec = workflow("infer-kill", mlp("mlp-kill", 7), input);
    // SIGKILL one executor as soon as the first scoring task has finished: the other 23 are queued or running.
    AtomicBoolean killed = new AtomicBoolean();
    AtomicInteger executorsAtKill = new AtomicInteger();
    SparkListener killer = new SparkListener() {
      @Override
      public void onTaskEnd(SparkListenerTaskEnd end) {
        boolean scoring = false;
        for (AccumulableInfo a : scala.collection.JavaConverters.seqAsJavaList(end.taskInfo().accumulables())) {
          scoring |= a.name().isDefined() && a.name().get().equals("infer.scored");
        }
        if (scoring && killed.compareAndSet(false, true)) {
          List<ProcessHandle> executors = cluster.executors();
          executorsAtKill.set(executors.size());
          executors.get(0).destroyForcibly();
        }
      }
    };
    StepRecord score = run(spec, Engine.Options.run("kill"), killer);
    assertThat(killed).as("an executor was killed while the step ran").isTrue();
    assertThat(executorsAtKill.get()).isEqualTo(2);
    assertExactlyOnce(score, rows);
    String first = score.outputs().get("output").uri();

    // The same run id, the step forced to run again (what `stagecraft step … --run-id kill` does): a new attempt,
    // committed in place of the first; still every id once.
    StepRecord again = run(spec, Engine.Options.run("kill").withOnlyStep("score"));
    assertExactlyOnce(again, rows);
    assertThat(again.outputs().get("output").uri()).isNotEqualTo(first);
  }

  @Test
  void fractionalGpuTasksShareTheirExecutorsAddressAndItsOnceLoadedModel() throws Exception {
    long rows = 64_000;
    String input = input("gpu-input", rows, 16);
    WorkflowSpec spec = workflow("infer-gpu", mlp("mlp-gpu", 11), input);
    // How many tasks run at once per executor (a whole-GPU task amount would allow one).
    Map<String, AtomicInteger> running = new ConcurrentHashMap<>();
    Map<String, AtomicInteger> peak = new ConcurrentHashMap<>();
    SparkListener concurrency = new SparkListener() {
      @Override
      public void onTaskStart(SparkListenerTaskStart start) {
        String e = start.taskInfo().executorId();
        int now = running.computeIfAbsent(e, k -> new AtomicInteger()).incrementAndGet();
        peak.computeIfAbsent(e, k -> new AtomicInteger()).accumulateAndGet(now, Math::max);
      }

      @Override
      public void onTaskEnd(SparkListenerTaskEnd end) {
        running.computeIfAbsent(end.taskInfo().executorId(), k -> new AtomicInteger()).decrementAndGet();
      }
    };
    StepRecord score = run(spec, Engine.Options.run("gpu"), concurrency);
    assertExactlyOnce(score, rows);

    // executor=ID partition=P gpu=ADDRESS device=DEVICE loads=N
    Pattern line = Pattern.compile("executor=(\\S+) partition=(\\d+) gpu=(\\S+) device=(\\S+) loads=(\\d+)");
    List<String> placements = InferStep.lastPlacements();
    assertThat(placements).as("one line per task (Spark packs the 16 files into fewer partitions)").hasSizeGreaterThanOrEqualTo(4);
    Map<String, List<String>> tasksByGpu = new HashMap<>();
    Map<String, String> gpuOfExecutor = new HashMap<>();
    for (String p : placements) {
      Matcher m = line.matcher(p);
      assertThat(m.matches()).as(p).isTrue();
      String executor = m.group(1);
      String gpu = m.group(3);
      assertThat(gpu).as("every task was given a GPU address: %s", p).isNotEqualTo("none");
      assertThat(gpuOfExecutor.putIfAbsent(executor, gpu)).as("one address per executor: %s", p).isIn(null, gpu);
      tasksByGpu.computeIfAbsent(gpu, k -> new ArrayList<>()).add(p);
      // No CUDA here: the runtime falls back to the CPU; one load per executor and device for all its tasks.
      assertThat(m.group(4)).startsWith("cpu");
      assertThat(m.group(5)).as("model loads in that executor: %s", p).isEqualTo("1");
    }
    assertThat(tasksByGpu.keySet()).isSubsetOf("0", "1");
    assertThat(tasksByGpu.values()).anyMatch(tasks -> tasks.size() > 1);
    assertThat(peak.values()).as("tasks at once per executor: %s", peak)
        .anyMatch(p -> p.get() > 1).allMatch(p -> p.get() <= 4);
  }

  /**
   * {@code fail_first_attempt(id)}: identity on {@code id}; but the first attempt of partition 0 fails at its 3,000th
   * row. A session extension provides it, since each step runs in a session of its own.
   */
  static final class FailFirstAttempt implements UDF1<Long, Long> {
    private static final long serialVersionUID = 1L;
    private long seen; // this task's: each task deserialises its own copy

    /** The extension ({@code spark.sql.extensions}) that adds the function to every session. */
    public static final class Functions
        extends scala.runtime.AbstractFunction1<SparkSessionExtensions, scala.runtime.BoxedUnit> {
      @Override
      public scala.runtime.BoxedUnit apply(SparkSessionExtensions extensions) {
        UserDefinedFunction f = functions.udf(new FailFirstAttempt(), DataTypes.LongType);
        // The builder takes a Scala Seq: scala.collection.Seq on 2.12, scala.collection.immutable.Seq on 2.13. Typed
        // by what both share (every immutable.Seq is a collection.Seq), one source compiles on both Spark lines.
        scala.Function1<Object, Expression> builder = new scala.runtime.AbstractFunction1<>() {
          @Override
          public Expression apply(Object args) {
            Expression arg = (Expression) ((scala.collection.Seq<?>) args).head();
            return SparkShim.expression(f.apply(SparkShim.column(arg)));
          }
        };
        @SuppressWarnings({"unchecked", "rawtypes"})
        scala.Tuple3 function = new scala.Tuple3(FunctionIdentifier.apply("fail_first_attempt"),
            new ExpressionInfo(FailFirstAttempt.class.getName(), "fail_first_attempt"), builder);
        extensions.injectFunction(function);
        return scala.runtime.BoxedUnit.UNIT;
      }
    }

    @Override
    public Long call(Long id) {
      TaskContext tc = TaskContext.get();
      if (tc.partitionId() == 0 && tc.attemptNumber() == 0 && ++seen == 3_000) {
        throw new IllegalStateException("injected: the first attempt of partition 0 fails");
      }
      return id;
    }
  }

  @Test
  void aTaskThatFailsAfterSettingBadRowsAsideLeavesThemToItsRetryOnly() throws Exception {
    long rows = 96_000;
    String input = input("retry-input", rows, 8);
    // Partition 0 holds one file's consecutive ids: when its first attempt fails, it has set three bad rows aside.
    WorkflowSpec spec = workflow("infer-retry", mlp("mlp-retry", 13), input, """
            preprocess: ["fail_first_attempt(id) AS id", "x"]
        """);
    List<String> failures = new java.util.concurrent.CopyOnWriteArrayList<>();
    SparkListener failed = new SparkListener() {
      @Override
      public void onTaskEnd(SparkListenerTaskEnd end) {
        if (!end.taskInfo().successful()) {
          failures.add(end.reason().toString());
        }
      }
    };
    StepRecord score = run(spec, Engine.Options.run("retry"), failed);
    assertThat(failures).hasSize(1).allMatch(r -> r.contains("injected: the first attempt of partition 0 fails"));
    assertExactlyOnce(score, rows);
  }
}
