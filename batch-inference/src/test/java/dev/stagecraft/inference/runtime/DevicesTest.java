package dev.stagecraft.inference.runtime;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.Device;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.testing.LogCapture;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.Test;

class DevicesTest {

  @Test
  void fakeGpuAddressOnThisCpuOnlyMachineGivesCpuAndWarnsOnce() {
    assertThat(Devices.cudaDeviceCount()).as("this test expects a machine without CUDA").isZero();
    Devices.resetLoggedWarnings();
    try (LogCapture log = new LogCapture(Devices.class)) {
      assertThat(Devices.select(Optional.of("3"))).isEqualTo(Device.cpu());
      assertThat(Devices.select(Optional.of("0"))).isEqualTo(Device.cpu());
      assertThat(Devices.select(Optional.empty())).isEqualTo(Device.cpu());
      assertThat(log.lines())
          .containsExactly("WARN No CUDA device: running on CPU (GPU address 3 assigned by Spark is not used)");
    }
  }

  @Test
  void withCudaTheAssignedDeviceIsBound() {
    assertThat(Devices.select(Optional.of("1"), 2)).isEqualTo(Device.gpu(1));
    assertThat(Devices.select(Optional.of(" 0 "), 1)).isEqualTo(Device.gpu(0));
    assertThat(Devices.select(Optional.empty(), 2)).isEqualTo(Device.cpu());
    assertThatThrownBy(() -> Devices.select(Optional.of("2"), 2))
        .isInstanceOfSatisfying(StagecraftException.class, e -> assertThat(e.category()).isEqualTo(ErrorCategory.RESOURCE))
        .hasMessage("Cannot bind GPU address 2: PyTorch sees 2 CUDA device(s) (expected an index in 0..1)");
    assertThatThrownBy(() -> Devices.select(Optional.of("GPU-5d3a"), 2))
        .hasMessage("Invalid GPU address from Spark: 'GPU-5d3a' (expected a CUDA device index)");
  }

  @Test
  void intraOpThreadsAreSetForTheCallingThread() throws Exception {
    ExecutorService thread = Executors.newSingleThreadExecutor();
    try {
      // Both directions, so a no-op setter fails whatever the default is.
      int[] seen = thread.submit(() -> {
        Devices.setIntraOpThreads(2);
        int two = Devices.intraOpThreads();
        Devices.setIntraOpThreads(1);
        return new int[] {two, Devices.intraOpThreads()};
      }).get();
      assertThat(seen).containsExactly(2, 1);
    } finally {
      thread.shutdownNow();
    }
    assertThatThrownBy(() -> Devices.setIntraOpThreads(0))
        .hasMessage("Invalid intra-op thread count: 0 (expected at least 1)");
  }
}
