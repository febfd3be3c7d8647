package dev.stagecraft.inference.cache;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Loaded models shared by the tasks of one JVM (a Spark executor): a model is loaded once per {@link Key} (model,
 * version, device), however many partitions and concurrent tasks use it, and closed once no task has used it for
 * {@code idle} (a task that starts within that time reuses it instead of loading it again).
 *
 * <p>A load that fails is remembered for {@code idle} as well: the tasks that ask meanwhile get the same error at
 * once instead of each retrying a broken model, and it is logged once, with the model's path.
 *
 * <p>Thread-safe. A load runs outside the cache's lock, so different models load concurrently; tasks asking for a
 * model that is being loaded wait for that load.
 *
 * @param <V> the loaded model; closed by the cache
 */
public final class ModelCache<V extends AutoCloseable> {
  private static final Logger LOG = LoggerFactory.getLogger(ModelCache.class);

  /** Where a model comes from (a path or URI, for messages), which version of it, and the device it is loaded on. */
  public record Key(String model, String version, String device) {
    public Key {
      requireNonNull(model, "model is null");
      requireNonNull(version, "version is null");
      requireNonNull(device, "device is null");
    }

    @Override
    public String toString() {
      return model + " (version " + version + ", " + device + ")";
    }
  }

  /** Loads a model; any exception it throws fails the tasks that wait for it. */
  @FunctionalInterface
  public interface Loader<V> {
    V load() throws Exception;
  }

  /** A task's use of a cached model; {@link #close} releases it (exactly once). */
  public final class Lease implements AutoCloseable {
    private final Entry entry;
    private boolean closed;

    private Lease(Entry entry) {
      this.entry = entry;
    }

    public V model() {
      if (closed) {
        throw new IllegalStateException("Model lease already released: " + entry.key);
      }
      return entry.value;
    }

    @Override
    public void close() {
      if (!closed) {
        closed = true;
        release(entry);
      }
    }
  }

  private final class Entry {
    final Key key;
    V value;
    RuntimeException failure;
    boolean loading = true;
    int users;
    ScheduledFuture<?> expiry;

    Entry(Key key) {
      this.key = key;
    }
  }

  private final Duration idle;
  private final Map<Key, Entry> entries = new HashMap<>();
  private final Map<Key, AtomicLong> loads = new HashMap<>();
  private final AtomicLong totalLoads = new AtomicLong();
  private final ScheduledExecutorService reaper = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "stagecraft-model-cache");
    t.setDaemon(true);
    return t;
  });

  public ModelCache(Duration idle) {
    this.idle = requireNonNull(idle, "idle is null");
  }

  /**
   * The model for {@code key}, loaded with {@code loader} unless it is cached; the caller must close the lease.
   *
   * @throws StagecraftException if loading fails (now or in another task within the idle time): the loader's own
   *     {@link StagecraftException}, else an external error naming the model
   */
  public Lease acquire(Key key, Loader<V> loader) {
    requireNonNull(key, "key is null");
    requireNonNull(loader, "loader is null");
    Entry entry;
    boolean mustLoad = false;
    synchronized (this) {
      entry = entries.get(key);
      if (entry == null) {
        entry = new Entry(key);
        entries.put(key, entry);
        mustLoad = true;
      }
      entry.users++;
      if (entry.expiry != null) {
        entry.expiry.cancel(false);
        entry.expiry = null;
      }
    }
    if (mustLoad) {
      load(entry, loader);
    }
    synchronized (this) {
      while (entry.loading) {
        try {
          wait();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          releaseLocked(entry);
          throw new StagecraftException(ErrorCategory.INTERNAL, "Interrupted while loading model " + key, e);
        }
      }
      if (entry.failure != null) {
        releaseLocked(entry);
        throw entry.failure;
      }
    }
    return new Lease(entry);
  }

  private void load(Entry entry, Loader<V> loader) {
    V value = null;
    RuntimeException failure = null;
    long start = System.nanoTime();
    try {
      value = requireNonNull(loader.load(), "loader returned null");
      LOG.info("Loaded model {} in {} ms", entry.key, (System.nanoTime() - start) / 1_000_000);
    } catch (Exception | LinkageError e) {
      failure = StagecraftException.find(e).<RuntimeException>map(x -> x).orElseGet(() ->
          StagecraftException.external(e, "Cannot load model %s: %s", entry.key.model(), e.getMessage()));
      // Once per failed load: the tasks that wait for it, or ask within the idle time, get the same error silently.
      LOG.error("Cannot load model {}: {}", entry.key, failure.getMessage());
    }
    synchronized (this) {
      loads.computeIfAbsent(entry.key, k -> new AtomicLong()).incrementAndGet();
      totalLoads.incrementAndGet();
      entry.value = value;
      entry.failure = failure;
      entry.loading = false;
      notifyAll();
    }
  }

  private synchronized void release(Entry entry) {
    releaseLocked(entry);
  }

  private void releaseLocked(Entry entry) {
    entry.users--;
    if (entry.users == 0) {
      entry.expiry = reaper.schedule(() -> expire(entry), idle.toMillis(), TimeUnit.MILLISECONDS);
    }
  }

  private void expire(Entry entry) {
    V value;
    synchronized (this) {
      if (entry.users > 0 || entries.get(entry.key) != entry) {
        return;
      }
      entries.remove(entry.key);
      value = entry.value;
    }
    if (value != null) {
      try {
        value.close();
        LOG.info("Released model {} (unused for {} s)", entry.key, idle.toSeconds());
      } catch (Exception e) {
        LOG.warn("Cannot close model {}: {}", entry.key, e.toString());
      }
    }
  }

  /** Closes every model no task uses now (e.g. at executor shutdown or between tests). */
  public void evictIdle() {
    for (Entry e : snapshot()) {
      synchronized (this) {
        if (e.users > 0 || e.loading) {
          continue;
        }
        if (e.expiry != null) {
          e.expiry.cancel(false);
        }
      }
      expire(e);
    }
  }

  private synchronized java.util.List<Entry> snapshot() {
    return java.util.List.copyOf(entries.values());
  }

  /** How many times {@code key} was loaded in this JVM (failed loads count). */
  public synchronized long loads(Key key) {
    AtomicLong n = loads.get(key);
    return n == null ? 0 : n.get();
  }

  /** Loads of any model in this JVM (failed loads count). */
  public long loads() {
    return totalLoads.get();
  }

  /** Whether {@code key} is loaded (or failed) and not yet released. */
  public synchronized boolean isCached(Key key) {
    return entries.containsKey(key);
  }

  /** Tasks using {@code key} now. */
  public synchronized int users(Key key) {
    Entry e = entries.get(key);
    return e == null ? 0 : e.users;
  }
}
