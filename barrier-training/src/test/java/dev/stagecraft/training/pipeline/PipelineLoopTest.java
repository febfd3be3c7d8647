package dev.stagecraft.training.pipeline;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.training.checkpoint.CheckpointPolicy;
import dev.stagecraft.training.checkpoint.CheckpointStore;
import dev.stagecraft.training.checkpoint.TrainingState;
import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.collective.FrameIntegrity;
import dev.stagecraft.training.collective.GroupSpec;
import dev.stagecraft.training.collective.PeerAddress;
import dev.stagecraft.training.collective.PipeLinks;
import dev.stagecraft.training.collective.Subgroups;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Optimizer;
import dev.stagecraft.training.model.StageModel;
import dev.stagecraft.training.model.Task;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The pipelined loop against the data-parallel one, in threads of one JVM over real, authenticated sockets: the
 * world's ring, each stage's ring and each replica's pipe links made by {@link Subgroups} as a barrier task does.
 */
class PipelineLoopTest {
  static final byte[] SECRET = "pipeline-loop-test-secret-0123".getBytes();
  static final int NF = 6;
  static final ModelSpec SPEC = ModelSpec.fromMap(Map.of("type", "mlp", "hidden", List.of(16, 12, 8),
      "optimizer", "adam", "lr", 0.01, "seed", 11));

  /** Points labelled by a non-linear rule, so the hidden layers have something to learn. */
  static WorkerLoop.LocalData data(int rows, long seed) {
    Random r = new Random(seed);
    float[] x = new float[rows * NF];
    float[] y = new float[rows];
    for (int i = 0; i < rows; i++) {
      double s = 0;
      for (int j = 0; j < NF; j++) {
        x[i * NF + j] = (float) r.nextGaussian();
        s += (j % 2 == 0 ? 1 : -1) * x[i * NF + j] * x[i * NF + (j + 1) % NF];
      }
      y[i] = s > 0 ? 1 : 0;
    }
    return new WorkerLoop.LocalData(x, y, rows, NF);
  }

  /** Data-parallel: one rank per part. */
  static List<WorkerLoop.Result> dataParallel(List<WorkerLoop.LocalData> parts, WorkerLoop.Config cfg)
      throws Exception {
    List<ServerSocket> servers = new ArrayList<>();
    List<PeerAddress> peers = new ArrayList<>();
    for (int r = 0; r < parts.size(); r++) {
      servers.add(Communicator.listen(InetAddress.getLoopbackAddress()));
      peers.add(new PeerAddress("127.0.0.1", servers.get(r).getLocalPort()));
    }
    String id = "dp-" + System.nanoTime();
    List<CompletableFuture<WorkerLoop.Result>> futures = new ArrayList<>();
    for (int r = 0; r < parts.size(); r++) {
      int rank = r;
      futures.add(CompletableFuture.supplyAsync(() -> {
        GroupSpec g = new GroupSpec(id, rank, peers, Duration.ofSeconds(30));
        try (Communicator comm = Communicator.connect(servers.get(rank), g, SECRET);
            FlatModel model = FlatModel.create(SPEC, Task.BINARY, NF, 2, Devices.select(Optional.empty()))) {
          return WorkerLoop.run(comm, model, Optimizer.create(SPEC, model.numParameters()), parts.get(rank), cfg,
              null);
        }
      }));
    }
    List<WorkerLoop.Result> out = new ArrayList<>();
    for (CompletableFuture<WorkerLoop.Result> f : futures) {
      out.add(f.get(180, TimeUnit.SECONDS));
    }
    return out;
  }

  /** Pipelined: rank r is stage r % P of replica r / P, replica d training on part d; results by world rank. */
  static List<PipelineLoop.Result> pipelined(List<WorkerLoop.LocalData> parts, WorkerLoop.Config cfg,
      Parallelism par, StageSplit split) throws Exception {
    return pipelined(parts, cfg, par, split, null, null);
  }

  /** As above, checkpointing into {@code store} under {@code policy} (and resuming from it) when given. */
  static List<PipelineLoop.Result> pipelined(List<WorkerLoop.LocalData> parts, WorkerLoop.Config cfg,
      Parallelism par, StageSplit split, CheckpointStore store, CheckpointPolicy policy) throws Exception {
    int world = par.pipeline() * parts.size();
    List<ServerSocket> servers = new ArrayList<>();
    List<PeerAddress> peers = new ArrayList<>();
    for (int r = 0; r < world; r++) {
      servers.add(Communicator.listen(InetAddress.getLoopbackAddress()));
      peers.add(new PeerAddress("127.0.0.1", servers.get(r).getLocalPort()));
    }
    String id = "pp-" + System.nanoTime();
    List<CompletableFuture<PipelineLoop.Result>> futures = new ArrayList<>();
    for (int r = 0; r < world; r++) {
      int rank = r;
      futures.add(CompletableFuture.supplyAsync(() -> {
        Duration timeout = Duration.ofSeconds(30);
        int stage = par.stageOf(rank);
        int replica = par.replicaOf(rank);
        try (Communicator comm = Communicator.connect(servers.get(rank), new GroupSpec(id, rank, peers, timeout),
            SECRET)) {
          Subgroups sub = new Subgroups(comm, id, InetAddress.getLoopbackAddress(), SECRET, timeout,
              FrameIntegrity.DEFAULT);
          List<Integer> stageRanks = IntStream.range(0, parts.size()).map(d -> par.rankOf(d, stage)).boxed().toList();
          List<Integer> pipeRanks = IntStream.range(0, par.pipeline()).map(s -> par.rankOf(replica, s)).boxed()
              .toList();
          StageSplit.Stage mine = split.stage(stage);
          try (Communicator ring = sub.ring("stage-" + stage, stageRanks);
              PipeLinks links = sub.pipe("replica-" + replica, pipeRanks);
              StageModel model = StageModel.create(SPEC, Task.BINARY, NF, 2, Devices.select(Optional.empty()),
                  mine.first(), mine.last())) {
            PipelineLoop.Position at = new PipelineLoop.Position(par, stage, replica, parts.size(), links, ring);
            PipelineCheckpoints checkpoints = store == null ? null
                : new PipelineCheckpoints(comm, store, policy, "fp", stage, replica, line -> {});
            TrainingState resume = checkpoints == null ? null : checkpoints.resume(line -> {});
            return PipelineLoop.run(at, model, Optimizer.create(SPEC, model.numParameters()), parts.get(replica),
                cfg, null, resume, checkpoints);
          } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
        }
      }));
    }
    List<PipelineLoop.Result> out = new ArrayList<>();
    for (CompletableFuture<PipelineLoop.Result> f : futures) {
      out.add(f.get(180, TimeUnit.SECONDS));
    }
    return out;
  }

  static StageSplit split(int stages) {
    return StageSplit.balanced(StageSplit.layers(SPEC, NF, 1), stages);
  }

  /** The stages' parameters of replica 0, put back together in layer order. */
  static float[] assembled(List<PipelineLoop.Result> results, int stages) {
    int n = 0;
    for (int s = 0; s < stages; s++) {
      n += results.get(s).parameters().length;
    }
    float[] all = new float[n];
    for (int s = 0, at = 0; s < stages; s++) {
      float[] p = results.get(s).parameters();
      System.arraycopy(p, 0, all, at, p.length);
      at += p.length;
    }
    return all;
  }

  static void assertRelativelyClose(double actual, double expected, double tolerance, String what) {
    assertThat(Math.abs(actual - expected)).as("%s: %s vs %s", what, actual, expected)
        .isLessThanOrEqualTo(tolerance * Math.max(1e-6, Math.abs(expected)));
  }

  @ParameterizedTest
  @EnumSource(PipeSchedule.class)
  void twoStagesOfFourMicroBatchesTrainWhatOneDataParallelWorkerTrainsStepForStep(PipeSchedule schedule)
      throws Exception {
    WorkerLoop.Config cfg = new WorkerLoop.Config(1, 32, true, 5);
    WorkerLoop.LocalData all = data(640, 3); // 20 steps of 32
    WorkerLoop.Result reference = dataParallel(List.of(all), cfg).get(0);
    Parallelism par = new Parallelism(2, 4, schedule, null);
    List<PipelineLoop.Result> pp = pipelined(List.of(all), cfg, par, split(2));

    assertThat(pp.get(0).steps()).isEqualTo(reference.steps()).isEqualTo(20);
    assertThat(pp.get(0).lossCurve()).hasSize(20);
    for (int i = 0; i < 20; i++) {
      assertRelativelyClose(pp.get(0).lossCurve().get(i)[2], reference.lossCurve().get(i)[2], 1e-5,
          "loss of step " + (i + 1));
      assertThat(pp.get(1).lossCurve().get(i)[2]).as("every stage knows the loss")
          .isEqualTo(pp.get(0).lossCurve().get(i)[2]);
    }
    float[] params = assembled(pp, 2);
    assertThat(params).hasSize(reference.parameters().length);
    // The assembled model scores rows as the data-parallel one does.
    try (FlatModel a = FlatModel.create(SPEC, Task.BINARY, NF, 2, Devices.select(Optional.empty()));
        FlatModel b = FlatModel.create(SPEC, Task.BINARY, NF, 2, Devices.select(Optional.empty()))) {
      a.setParameters(reference.parameters());
      b.setParameters(params);
      WorkerLoop.LocalData rows = data(200, 99);
      FloatBuffer x = ByteBuffer.allocateDirect(200 * NF * 4).order(ByteOrder.nativeOrder()).asFloatBuffer();
      x.put(rows.features(), 0, 200 * NF).flip();
      float[] pa = a.predict(x, 200);
      float[] pb = b.predict(x, 200);
      for (int i = 0; i < 200; i++) {
        assertThat((double) pb[i]).as("score of row %d", i)
            .isCloseTo(pa[i], org.assertj.core.data.Offset.offset(1e-5 * Math.max(1, Math.abs(pa[i]))));
      }
    }
  }

  @Test
  void twoReplicasOfTwoStagesMatchTwoDataParallelWorkers() throws Exception {
    WorkerLoop.Config cfg = new WorkerLoop.Config(2, 32, true, 8);
    List<WorkerLoop.LocalData> parts = List.of(data(160, 4), data(150, 5)); // uneven: the second runs out first
    WorkerLoop.Result reference = dataParallel(parts, cfg).get(0);
    List<PipelineLoop.Result> pp = pipelined(parts, cfg, new Parallelism(2, 4, PipeSchedule.ONE_F_ONE_B, null),
        split(2));

    assertThat(pp.get(0).samples()).isEqualTo(reference.samples()).isEqualTo(2 * 310);
    for (int i = 0; i < reference.lossCurve().size(); i++) {
      assertRelativelyClose(pp.get(0).lossCurve().get(i)[2], reference.lossCurve().get(i)[2], 1e-5,
          "loss of step " + (i + 1));
    }
    assertThat(pp.get(2).parameters()).as("the replicas of a stage agree bit for bit")
        .containsExactly(pp.get(0).parameters());
    assertThat(pp.get(3).parameters()).containsExactly(pp.get(1).parameters());
  }

  @Test
  void oneFOneBHoldsAtMostPMicroBatchesOfActivationsWhereGPipeHoldsM() throws Exception {
    WorkerLoop.Config cfg = new WorkerLoop.Config(1, 64, false, 1);
    WorkerLoop.LocalData all = data(256, 6);
    StageSplit split = split(3);
    List<PipelineLoop.Result> gpipe = pipelined(List.of(all), cfg, new Parallelism(3, 8, PipeSchedule.GPIPE, null),
        split);
    List<PipelineLoop.Result> oneF = pipelined(List.of(all), cfg,
        new Parallelism(3, 8, PipeSchedule.ONE_F_ONE_B, null), split);
    for (int s = 0; s < 3; s++) {
      assertThat(gpipe.get(s).peakMicroBatches()).as("gpipe, stage %d", s).isEqualTo(8);
      assertThat(oneF.get(s).peakMicroBatches()).as("1f1b, stage %d", s).isEqualTo(3 - s).isLessThanOrEqualTo(3);
      assertThat((double) oneF.get(s).peakActivationBytes()).as("1f1b's activation bytes, stage %d", s)
          .isLessThanOrEqualTo(gpipe.get(s).peakActivationBytes() * (3.0 / 8) * 1.1);
      assertThat(oneF.get(s).bytesSent()).isEqualTo(gpipe.get(s).bytesSent());
    }
  }
}
