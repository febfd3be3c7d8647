package dev.stagecraft.inference.spark;

import java.util.Map;
import java.util.Optional;
import org.apache.spark.resource.ResourceInformation;

/**
 * The GPU a task was given: the first address of Spark's {@code gpu} resource for the task. With a fractional
 * {@code spark.task.resource.gpu.amount} (0.25: four tasks per GPU) Spark hands the same address to several
 * concurrent tasks; they then share one model loaded on that device (the cache key includes the device).
 */
final class GpuBinding {
  static final String GPU = "gpu";

  private GpuBinding() {}

  /** A pure function of the task's resources, so it is tested without a cluster. */
  static Optional<String> address(Map<String, ResourceInformation> resources) {
    ResourceInformation gpu = resources == null ? null : resources.get(GPU);
    if (gpu == null || gpu.addresses().length == 0) {
      return Optional.empty();
    }
    return Optional.of(gpu.addresses()[0].trim());
  }
}
