package dev.stagecraft.training.spark;

import dev.stagecraft.training.collective.Communicator;
import dev.stagecraft.training.loop.WorkerLoop;
import dev.stagecraft.inference.model.Devices;
import dev.stagecraft.training.model.FlatModel;
import dev.stagecraft.training.model.ModelSpec;
import dev.stagecraft.training.model.Optimizer;
import dev.stagecraft.training.model.Task;
import dev.stagecraft.training.rendezvous.Rendezvous;
import java.io.Serializable;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.BarrierTaskContext;
import org.apache.spark.SparkEnv;
import org.apache.spark.resource.ResourceInformation;
import org.apache.spark.sql.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What each barrier task of a {@code train} step runs once connected to its peers ({@link BarrierGroup}): read its
 * partition once into float buffers, bind to the GPU Spark gave it, and run {@link WorkerLoop}. Rank 0 reports
 * progress to the driver and returns the trained parameters; every rank returns where it ran.
 */
final class TrainTask implements BarrierGroup.Work<Row, TrainTask.Outcome> {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(TrainTask.class);

  /** What one task reports back to the driver. Parameters and the loss curve come from rank 0 only. */
  record Outcome(int rank, String host, String gpuAddress, String device, int rows, float[] parameters,
      List<double[]> lossCurve, long steps, long samples, double seconds, double computeSeconds,
      double exchangeSeconds) implements Serializable {
    /** The GPU address Spark assigned the task, if any. */
    Optional<String> gpu() {
      return Optional.ofNullable(gpuAddress);
    }
  }

  private final Map<String, Object> modelSpec;
  private final Task task;
  private final int numClasses;
  private final TrainingInput.Features features;
  private final double[] mean;
  private final double[] std;
  private final boolean shuffle;
  private final WorkerLoop.Schedule schedule;

  TrainTask(Map<String, Object> modelSpec, Task task, int numClasses, TrainingInput.Features features, double[] mean,
      double[] std, boolean shuffle, WorkerLoop.Schedule schedule) {
    this.schedule = schedule;
    this.modelSpec = modelSpec;
    this.task = task;
    this.numClasses = numClasses;
    this.features = features;
    this.mean = mean;
    this.std = std;
    this.shuffle = shuffle;
  }

  @Override
  public Outcome run(Communicator comm, Iterator<Row> rows, Rendezvous.Reporter reporter) {
    BarrierTaskContext ctx = BarrierTaskContext.get();
    int rank = comm.rank();
    WorkerLoop.LocalData data = materialise(rows);

    // GPU binding: exactly the address Spark assigned this task; CPU (logged once) when no CUDA device exists.
    scala.Option<ResourceInformation> gpus = ctx.resources().get("gpu");
    Optional<String> gpu = gpus.isDefined() && gpus.get().addresses().length > 0
        ? Optional.of(gpus.get().addresses()[0]) : Optional.empty();
    // As many PyTorch intra-op threads as the task has CPUs, so workers sharing an executor do not oversubscribe it
    // (set on this thread: the one that runs the model).
    Devices.setIntraOpThreads(Math.max(1, ctx.cpus()));
    String host = SparkEnv.get().blockManager().blockManagerId().host();
    ModelSpec spec = ModelSpec.fromMap(modelSpec);
    try (FlatModel model = FlatModel.create(spec, task, mean.length, numClasses, Devices.select(gpu))) {
      model.setRandomStream(rank);
      LOG.info("Rank {} of {} on {} ({}, GPU {}): {} rows", rank, comm.worldSize(), host, model.device(),
          gpu.orElse("none"), data.rows());
      ProgressReporter listener = reporter == null ? null : new ProgressReporter(reporter, spec.epochs());
      WorkerLoop.Result r = WorkerLoop.run(comm, model, Optimizer.create(spec, model.numParameters()), data,
          new WorkerLoop.Config(spec.epochs(), spec.batchSize(), shuffle, spec.seed(), schedule), listener);
      if (listener != null) {
        listener.flush();
      }
      return rank == 0
          ? new Outcome(rank, host, gpu.orElse(null), model.device().toString(), data.rows(), r.parameters(),
              new java.util.ArrayList<>(r.lossCurve()), r.steps(), r.samples(), r.seconds(), r.computeSeconds(),
              r.exchangeSeconds())
          : new Outcome(rank, host, gpu.orElse(null), model.device().toString(), data.rows(), null, List.of(),
              r.steps(), r.samples(), r.seconds(), r.computeSeconds(), r.exchangeSeconds());
    }
  }

  /** The partition, read once into compact float buffers (label first in each row; features standardised). */
  private WorkerLoop.LocalData materialise(Iterator<Row> rows) {
    int nf = mean.length;
    float[] x = new float[1024 * nf];
    float[] y = new float[1024];
    int n = 0;
    while (rows.hasNext()) {
      Row row = rows.next();
      if (n == y.length) {
        y = Arrays.copyOf(y, y.length * 2);
        x = Arrays.copyOf(x, y.length * nf);
      }
      y[n] = (float) row.getDouble(0);
      TrainingInput.standardise(row, features, mean, std, x, n * nf);
      n++;
    }
    return new WorkerLoop.LocalData(x, y, n, nf);
  }

  /** Sends rank 0's progress to the driver about once a second, and the last step. */
  private static final class ProgressReporter implements WorkerLoop.Listener {
    private final Rendezvous.Reporter reporter;
    private final int epochs;
    private long lastSent;
    private String pending;

    ProgressReporter(Rendezvous.Reporter reporter, int epochs) {
      this.reporter = reporter;
      this.epochs = epochs;
    }

    @Override
    public void step(int epoch, long step, long totalSteps, double loss, long samples, double seconds) {
      double rate = seconds > 0 ? samples / seconds : 0;
      double eta = step > 0 ? seconds * (totalSteps - step) / step : 0;
      pending = Progress.format(epoch, epochs, step, totalSteps, loss, rate, eta);
      long now = System.nanoTime();
      if (now - lastSent > 1_000_000_000L || step == totalSteps) {
        reporter.send(pending);
        lastSent = now;
        pending = null;
      }
    }

    void flush() {
      if (pending != null) {
        reporter.send(pending);
      }
    }
  }
}
