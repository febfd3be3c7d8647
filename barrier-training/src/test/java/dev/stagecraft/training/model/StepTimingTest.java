package dev.stagecraft.training.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.Device;
import dev.stagecraft.inference.runtime.Devices;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Per-step cost of the DJL round trip for the a9a-sized logistic model (123 features, batch 512), on one intra-op
 * thread so that the calling thread's CPU time is the whole cost (wall time also counts other processes' load).
 */
class StepTimingTest {
  private static final Logger LOG = LoggerFactory.getLogger(StepTimingTest.class);

  @Test
  void logisticStepOn512By123() {
    Datasets d = Datasets.random(1, 512, 123, Task.BINARY, 2);
    ModelSpec spec = new ModelSpec(ModelSpec.Type.LOGISTIC, List.of(), ModelSpec.Activation.RELU, 0, 1, 512,
        ModelSpec.OptimizerName.ADAM, 0.01, 0.9, 1);
    Devices.setIntraOpThreads(1);
    ThreadMXBean threads = ManagementFactory.getThreadMXBean();
    try (FlatModel model = FlatModel.create(spec, Task.BINARY, 123, 2, Device.cpu())) {
      Optimizer optimizer = Optimizer.create(spec, model.numParameters());
      float[] params = model.parameters();
      for (int i = 0; i < 500; i++) {
        model.computeGradients(d.featureRows(0, 512), d.labelRows(0, 512), 512);
      }
      int steps = 2000;
      long wall = System.nanoTime();
      long cpu = threads.getCurrentThreadCpuTime();
      for (int i = 0; i < steps; i++) {
        model.computeGradients(d.featureRows(0, 512), d.labelRows(0, 512), 512);
      }
      double gradientWall = (System.nanoTime() - wall) / 1e3 / steps;
      double gradientCpu = (threads.getCurrentThreadCpuTime() - cpu) / 1e3 / steps;
      wall = System.nanoTime();
      cpu = threads.getCurrentThreadCpuTime();
      for (int i = 0; i < steps; i++) {
        model.computeGradients(d.featureRows(0, 512), d.labelRows(0, 512), 512);
        optimizer.update(params, model.gradients());
        model.setParameters(params);
      }
      double stepWall = (System.nanoTime() - wall) / 1e3 / steps;
      double stepCpu = (threads.getCurrentThreadCpuTime() - cpu) / 1e3 / steps;
      String line = String.format(
          "logistic 512x123, 1 intra-op thread: computeGradients %.0f us CPU (%.0f us wall); "
              + "with Adam update and setParameters %.0f us CPU (%.0f us wall)",
          gradientCpu, gradientWall, stepCpu, stepWall);
      LOG.info(line);
      assertThat(gradientCpu).as(line).isLessThan(3_000);
    }
  }
}
