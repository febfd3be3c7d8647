package dev.stagecraft.inference.cache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.testing.LogCapture;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

class ModelCacheTest {
  /** A stand-in for a loaded network: it only knows whether it was closed. */
  static final class Model implements AutoCloseable {
    final AtomicInteger closes = new AtomicInteger();

    @Override
    public void close() {
      closes.incrementAndGet();
    }
  }

  static final ModelCache.Key CPU = new ModelCache.Key("hdfs://nn/models/m/1", "sha-1", "cpu()");
  static final ModelCache.Key GPU0 = new ModelCache.Key("hdfs://nn/models/m/1", "sha-1", "gpu(0)");

  @Test
  void concurrentTasksShareOneLoadPerModelVersionAndDevice() throws Exception {
    ModelCache<Model> cache = new ModelCache<>(Duration.ofSeconds(60));
    AtomicInteger loaderCalls = new AtomicInteger();
    CountDownLatch go = new CountDownLatch(1);
    ExecutorService pool = Executors.newFixedThreadPool(8);
    try {
      List<Future<ModelCache<Model>.Lease>> leases = new ArrayList<>();
      for (int i = 0; i < 8; i++) {
        leases.add(pool.submit(() -> {
          go.await();
          return cache.acquire(CPU, () -> {
            loaderCalls.incrementAndGet();
            Thread.sleep(200); // the others arrive while it loads, and wait for it
            return new Model();
          });
        }));
      }
      go.countDown();
      List<ModelCache<Model>.Lease> held = new ArrayList<>();
      for (Future<ModelCache<Model>.Lease> f : leases) {
        held.add(f.get(30, TimeUnit.SECONDS));
      }
      assertThat(loaderCalls).hasValue(1);
      assertThat(cache.loads(CPU)).isEqualTo(1);
      assertThat(held).extracting(ModelCache.Lease::model).containsOnly(held.get(0).model());
      assertThat(cache.users(CPU)).isEqualTo(8);

      // Another device is another load.
      try (ModelCache<Model>.Lease gpu = cache.acquire(GPU0, Model::new)) {
        assertThat(gpu.model()).isNotSameAs(held.get(0).model());
        assertThat(cache.loads(GPU0)).isEqualTo(1);
        assertThat(cache.loads()).isEqualTo(2);
      }
      held.forEach(ModelCache.Lease::close);
      assertThat(cache.users(CPU)).isZero();
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void aModelIsClosedOnceNoTaskUsedItForTheIdleTimeAndReusedBefore() {
    ModelCache<Model> cache = new ModelCache<>(Duration.ofMillis(300));
    ModelCache<Model>.Lease a = cache.acquire(CPU, Model::new);
    ModelCache<Model>.Lease b = cache.acquire(CPU, Model::new);
    Model m = a.model();
    a.close();
    a.close(); // released once only
    assertThat(cache.users(CPU)).isEqualTo(1);
    assertThatThrownBy(a::model).isInstanceOf(IllegalStateException.class);
    b.close();
    // Within the idle time a new task gets the same model, not a new load.
    try (ModelCache<Model>.Lease c = cache.acquire(CPU, Model::new)) {
      assertThat(c.model()).isSameAs(m);
    }
    assertThat(cache.loads(CPU)).isEqualTo(1);
    assertThat(m.closes).hasValue(0);
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> !cache.isCached(CPU));
    assertThat(m.closes).hasValue(1);
    try (ModelCache<Model>.Lease d = cache.acquire(CPU, Model::new)) {
      assertThat(d.model()).isNotSameAs(m);
    }
    assertThat(cache.loads(CPU)).isEqualTo(2);
    cache.evictIdle();
    assertThat(cache.isCached(CPU)).isFalse();
  }

  @Test
  void aFailedLoadIsLoggedOnceWithThePathAndRememberedForTheIdleTime() {
    ModelCache<Model> cache = new ModelCache<>(Duration.ofMillis(500));
    AtomicInteger loaderCalls = new AtomicInteger();
    ModelCache.Loader<Model> broken = () -> {
      loaderCalls.incrementAndGet();
      throw new IOException("weights.bin: no such file");
    };
    try (LogCapture log = new LogCapture(ModelCache.class)) {
      StagecraftException first = null;
      for (int i = 0; i < 3; i++) {
        try {
          cache.acquire(CPU, broken).close();
        } catch (StagecraftException e) {
          assertThat(e).hasMessage("Cannot load model hdfs://nn/models/m/1: weights.bin: no such file");
          if (first == null) {
            first = e;
          }
          assertThat(e).isSameAs(first);
        }
      }
      assertThat(first).as("every acquire failed").isNotNull();
      assertThat(loaderCalls).hasValue(1);
      assertThat(cache.users(CPU)).isZero();
      assertThat(log.lines()).hasSize(1).allMatch(l -> l.startsWith("ERROR Cannot load model hdfs://nn/models/m/1"));
      // Forgotten after the idle time: the next task tries again.
      Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> !cache.isCached(CPU));
      try (ModelCache<Model>.Lease ok = cache.acquire(CPU, Model::new)) {
        assertThat(ok.model()).isNotNull();
      }
      assertThat(cache.loads(CPU)).isEqualTo(2);
    }
  }
}
