package dev.stagecraft.training.loop;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.inference.runtime.Devices;
import dev.stagecraft.training.checkpoint.Checkpointing;
import dev.stagecraft.training.checkpoint.TrainingState;
import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.collective.GroupSpec;
import dev.stagecraft.training.collective.PeerAddress;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Optimizer;
import dev.stagecraft.training.model.Task;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class WorkerLoopTest {
  static final byte[] SECRET = "worker-loop-test-secret-123456".getBytes();
  static final int NF = 5;

  /** Two clusters of points on either side of a hyperplane, shuffled. */
  static WorkerLoop.LocalData data(int rows, long seed) {
    Random r = new Random(seed);
    float[] x = new float[rows * NF];
    float[] y = new float[rows];
    for (int i = 0; i < rows; i++) {
      double s = 0;
      for (int j = 0; j < NF; j++) {
        x[i * NF + j] = (float) r.nextGaussian();
        s += (j + 1) * x[i * NF + j];
      }
      y[i] = s + 0.3 * r.nextGaussian() > 0 ? 1 : 0;
    }
    return new WorkerLoop.LocalData(x, y, rows, NF);
  }

  /** Rows {@code rank*b … } of every consecutive block of {@code n*b}: what rank {@code rank} of n sees per step. */
  static WorkerLoop.LocalData slice(WorkerLoop.LocalData all, int n, int rank, int localBatch) {
    List<Integer> rows = new ArrayList<>();
    for (int start = 0; start < all.rows(); start += n * localBatch) {
      for (int i = start + rank * localBatch; i < Math.min(all.rows(), start + (rank + 1) * localBatch); i++) {
        rows.add(i);
      }
    }
    float[] x = new float[rows.size() * NF];
    float[] y = new float[rows.size()];
    for (int k = 0; k < rows.size(); k++) {
      System.arraycopy(all.features(), rows.get(k) * NF, x, k * NF, NF);
      y[k] = all.labels()[rows.get(k)];
    }
    return new WorkerLoop.LocalData(x, y, rows.size(), NF);
  }

  static List<WorkerLoop.Result> train(List<WorkerLoop.LocalData> parts, ModelSpec spec, WorkerLoop.Config cfg)
      throws Exception {
    return train(parts, spec, cfg, null, Checkpointing.NONE);
  }

  /** Trains with every rank starting from {@code resume} (or fresh); rank 0 calls {@code checkpointing}. */
  static List<WorkerLoop.Result> train(List<WorkerLoop.LocalData> parts, ModelSpec spec, WorkerLoop.Config cfg,
      TrainingState resume, Checkpointing checkpointing) throws Exception {
    int n = parts.size();
    List<ServerSocket> servers = new ArrayList<>();
    List<PeerAddress> peers = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      ServerSocket s = Communicator.listen(InetAddress.getLoopbackAddress());
      servers.add(s);
      peers.add(new PeerAddress("127.0.0.1", s.getLocalPort()));
    }
    List<CompletableFuture<WorkerLoop.Result>> futures = new ArrayList<>();
    for (int r = 0; r < n; r++) {
      int rank = r;
      futures.add(CompletableFuture.supplyAsync(() -> {
        GroupSpec g = new GroupSpec("loop-test", rank, peers, Duration.ofSeconds(30));
        try (Communicator comm = Communicator.connect(servers.get(rank), g, SECRET);
            FlatModel model = FlatModel.create(spec, Task.BINARY, NF, 2, Devices.select(Optional.empty()))) {
          model.setRandomStream(rank);
          return WorkerLoop.run(comm, model, Optimizer.create(spec, model.numParameters()), parts.get(rank), cfg,
              null, resume, rank == 0 ? checkpointing : Checkpointing.NONE);
        }
      }));
    }
    List<WorkerLoop.Result> out = new ArrayList<>();
    for (CompletableFuture<WorkerLoop.Result> f : futures) {
      out.add(f.get(120, TimeUnit.SECONDS));
    }
    return out;
  }

  @Test
  void twoWorkersWithGlobalBatchBMatchOneWorkerWithBatchB() throws Exception {
    ModelSpec spec = ModelSpec.fromMap(Map.of("type", "logistic", "optimizer", "sgd", "lr", 0.5, "seed", 7));
    WorkerLoop.Config cfg = new WorkerLoop.Config(3, 64, false, 7);
    WorkerLoop.LocalData all = data(1000, 1);

    WorkerLoop.Result one = train(List.of(all), spec, cfg).get(0);
    List<WorkerLoop.Result> two = train(List.of(slice(all, 2, 0, 32), slice(all, 2, 1, 32)), spec, cfg);

    assertThat(two.get(0).parameters()).as("all ranks agree bit for bit").containsExactly(two.get(1).parameters());
    assertThat(two.get(0).steps()).isEqualTo(one.steps()).isEqualTo(3 * 16);
    assertThat(two.get(0).samples()).isEqualTo(one.samples()).isEqualTo(3000);
    float[] a = one.parameters();
    float[] b = two.get(0).parameters();
    for (int i = 0; i < a.length; i++) {
      assertThat(b[i]).as("parameter %d", i).isCloseTo(a[i], org.assertj.core.data.Offset.offset(1e-4f));
    }
    double[] lastOne = one.lossCurve().get(one.lossCurve().size() - 1);
    double[] lastTwo = two.get(0).lossCurve().get(two.get(0).lossCurve().size() - 1);
    assertThat(lastTwo[2]).isCloseTo(lastOne[2], org.assertj.core.data.Offset.offset(1e-4));
  }

  @Test
  void unevenAndEmptyPartitionsStillUseEveryRowOncePerEpoch() throws Exception {
    ModelSpec spec = ModelSpec.fromMap(Map.of("type", "logistic", "optimizer", "adam", "lr", 0.05));
    WorkerLoop.LocalData all = data(700, 2);
    WorkerLoop.LocalData big = new WorkerLoop.LocalData(all.features(), all.labels(), 700, NF);
    WorkerLoop.LocalData empty = new WorkerLoop.LocalData(new float[0], new float[0], 0, NF);
    List<WorkerLoop.Result> r = train(List.of(big, empty), spec, new WorkerLoop.Config(4, 100, true, 1));
    assertThat(r.get(0).samples()).isEqualTo(4 * 700);
    assertThat(r.get(1).parameters()).containsExactly(r.get(0).parameters());
    double firstLoss = r.get(0).lossCurve().get(0)[2];
    double lastLoss = r.get(0).lossCurve().get(r.get(0).lossCurve().size() - 1)[2];
    assertThat(lastLoss).isLessThan(firstLoss * 0.6);
  }

  /** Keeps the snapshot of one chosen step, and the one at the end. */
  static final class Keep implements Checkpointing {
    final long at;
    TrainingState state;
    TrainingState last;

    Keep(long at) {
      this.at = at;
    }

    @Override
    public void afterStep(long step, java.util.function.Supplier<TrainingState> snapshot) {
      if (step == at) {
        state = snapshot.get();
      }
    }

    @Override
    public void end(long step, java.util.function.Supplier<TrainingState> snapshot) {
      last = snapshot.get();
    }
  }

  @Test
  void resumingFromASnapshotEndsBitForBitWhereAnUninterruptedRunEnds() throws Exception {
    // Dropout (masks from seed, rank, step), Adam state, a cosine schedule and per-epoch shuffles: all must resume.
    ModelSpec spec = ModelSpec.fromMap(Map.of("type", "mlp", "hidden", List.of(16), "dropout", 0.2,
        "optimizer", "adam", "lr", 0.01, "seed", 11));
    WorkerLoop.Config cfg = new WorkerLoop.Config(3, 64, true, 11, WorkerLoop.Schedule.COSINE);
    WorkerLoop.LocalData all = data(1000, 3);
    List<WorkerLoop.LocalData> parts = List.of(slice(all, 2, 0, 32), slice(all, 2, 1, 32));

    Keep keep = new Keep(21); // 16 steps per epoch: mid-epoch 2
    List<WorkerLoop.Result> whole = train(parts, spec, cfg, null, keep);
    assertThat(keep.state.globalStep()).isEqualTo(21);
    assertThat(keep.state.epoch()).isEqualTo(2);
    assertThat(keep.state.nextStepInEpoch()).isEqualTo(5);

    // Through the checkpoint files and back, as a resume reads them.
    TrainingState restored = TrainingState.fromFiles(keep.state.toFiles());
    List<WorkerLoop.Result> resumed = train(parts, spec, cfg, restored, Checkpointing.NONE);
    assertThat(resumed.get(0).resumedFromStep()).isEqualTo(21);
    assertThat(resumed.get(0).steps()).isEqualTo(whole.get(0).steps()).isEqualTo(48);
    assertThat(resumed.get(0).samples()).isEqualTo(whole.get(0).samples());
    assertThat(resumed.get(0).parameters()).containsExactly(whole.get(0).parameters());
    assertThat(resumed.get(1).parameters()).containsExactly(whole.get(0).parameters());
    assertThat(resumed.get(0).lossCurve()).hasSize(48);
    for (int i = 0; i < 48; i++) {
      assertThat(resumed.get(0).lossCurve().get(i)).containsExactly(whole.get(0).lossCurve().get(i));
    }

    // From the final snapshot nothing is left to train.
    List<WorkerLoop.Result> done = train(parts, spec, cfg, TrainingState.fromFiles(keep.last.toFiles()),
        Checkpointing.NONE);
    assertThat(done.get(0).steps()).isEqualTo(48);
    assertThat(done.get(0).parameters()).containsExactly(whole.get(0).parameters());
  }

  @Test
  void aSnapshotFromARunWithOtherStepsPerEpochIsRefused() throws Exception {
    ModelSpec spec = ModelSpec.fromMap(Map.of("type", "logistic", "optimizer", "sgd", "lr", 0.1));
    WorkerLoop.LocalData all = data(200, 4);
    Keep keep = new Keep(6);
    train(List.of(all), spec, new WorkerLoop.Config(2, 50, false, 1), null, keep); // 4 steps per epoch
    TrainingState s = keep.state;
    // The same state claimed for a run of 10 steps per epoch does not add up.
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> train(List.of(all), spec,
            new WorkerLoop.Config(2, 20, false, 1), s, Checkpointing.NONE))
        .hasRootCauseMessage("Cannot resume at step 6 (epoch 2, step 2 of the epoch): this run has 10 steps per "
            + "epoch");
  }
}
