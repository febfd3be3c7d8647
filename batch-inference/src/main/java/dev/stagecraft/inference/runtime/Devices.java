package dev.stagecraft.inference.runtime;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.engine.StandardCapabilities;
import ai.djl.pytorch.jni.JniUtils;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Binds a task (training or scoring) to a DJL device and sizes PyTorch's intra-op thread pool. */
public final class Devices {
  private static final Logger LOG = LoggerFactory.getLogger(Devices.class);

  private static final AtomicBoolean CPU_FALLBACK_LOGGED = new AtomicBoolean();
  private static final AtomicBoolean UNASSIGNED_GPU_LOGGED = new AtomicBoolean();

  private Devices() {}

  /**
   * The device a task trains on: the CUDA device Spark assigned it, or the CPU when the PyTorch engine has no CUDA
   * device (logged once per JVM at WARN when Spark did assign an address, as on a laptop or a CPU-only test cluster
   * with a fake GPU discovery script).
   *
   * @param gpuAddress the task's GPU address from {@code TaskContext.resources()}, if Spark assigned one
   * @throws StagecraftException if CUDA is present and the address is not a device index PyTorch sees
   */
  public static Device select(Optional<String> gpuAddress) {
    return select(gpuAddress, cudaDeviceCount());
  }

  /** {@link #select(Optional)} as a pure function of the number of CUDA devices PyTorch sees. */
  static Device select(Optional<String> gpuAddress, int cudaDevices) {
    if (gpuAddress.isEmpty()) {
      if (cudaDevices > 0 && UNASSIGNED_GPU_LOGGED.compareAndSet(false, true)) {
        LOG.info("{} CUDA device(s) present but Spark assigned this task no GPU: running on CPU", cudaDevices);
      }
      return Device.cpu();
    }
    String address = gpuAddress.get().trim();
    if (cudaDevices == 0) {
      if (CPU_FALLBACK_LOGGED.compareAndSet(false, true)) {
        LOG.warn("No CUDA device: running on CPU (GPU address {} assigned by Spark is not used)", address);
      }
      return Device.cpu();
    }
    int index;
    try {
      index = Integer.parseInt(address);
    } catch (NumberFormatException e) {
      throw new StagecraftException(
          ErrorCategory.RESOURCE,
          String.format("Invalid GPU address from Spark: '%s' (expected a CUDA device index)", address));
    }
    if (index < 0 || index >= cudaDevices) {
      throw new StagecraftException(
          ErrorCategory.RESOURCE,
          String.format(
              "Cannot bind GPU address %s: PyTorch sees %d CUDA device(s) (expected an index in 0..%d)",
              address, cudaDevices, cudaDevices - 1));
    }
    return Device.gpu(index);
  }

  /**
   * CUDA devices the loaded PyTorch engine can use: 0 for a CPU build of libtorch even on a machine with GPUs (DJL's
   * {@code getGpuCount()} alone asks the CUDA driver, not the libtorch build).
   */
  public static int cudaDeviceCount() {
    Engine engine = DjlEnvironment.pytorch();
    return engine.hasCapability(StandardCapabilities.CUDA) ? engine.getGpuCount() : 0;
  }

  /**
   * Sets PyTorch's intra-op thread count for the calling thread, typically to the task's CPUs
   * ({@code spark.task.cpus}) so concurrent tasks of one executor do not oversubscribe its cores.
   *
   * <p>Call it on the thread that then runs the model: with libtorch's OpenMP backend,
   * {@code at::set_num_threads} updates a process-wide default and the calling thread's OpenMP setting, but a thread
   * that already ran a parallel operation keeps the count it started with (measured: a worker thread stayed at 2
   * after the main thread set 1). The system property {@code ai.djl.pytorch.num_threads} is not used: DJL reads it
   * once, when the engine loads, and in an executor JVM the engine may already have been loaded by an earlier task.
   *
   * @throws IllegalArgumentException if {@code threads} is less than 1
   */
  public static void setIntraOpThreads(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("Invalid intra-op thread count: " + threads + " (expected at least 1)");
    }
    DjlEnvironment.pytorch();
    JniUtils.setNumThreads(threads);
  }

  /** PyTorch's intra-op thread count as the calling thread sees it. */
  public static int intraOpThreads() {
    DjlEnvironment.pytorch();
    return JniUtils.getNumThreads();
  }

  /** Lets tests observe the once-per-JVM warnings again. */
  static void resetLoggedWarnings() {
    CPU_FALLBACK_LOGGED.set(false);
    UNASSIGNED_GPU_LOGGED.set(false);
  }
}
