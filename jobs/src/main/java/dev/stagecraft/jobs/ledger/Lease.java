package dev.stagecraft.jobs.ledger;

import com.fasterxml.jackson.annotation.JsonInclude;
import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.net.InetAddress;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An exclusive claim on a run (or a step of it) by one live process, kept in a small file in the workspace.
 *
 * <p>The file is created atomically ({@link AtomicFiles#createExclusive}) and names its holder (host, pid, user,
 * command). The holder rewrites it every {@code heartbeat}; a lease whose heartbeat is older than {@code staleAfter}
 * belongs to a process that died without closing it (kill -9, lost machine) and may be taken over.
 */
public final class Lease implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Lease.class);

  public static final Duration DEFAULT_STALE_AFTER = Duration.ofSeconds(60);
  public static final Duration DEFAULT_HEARTBEAT = Duration.ofSeconds(10);

  /** Who holds a lease. Times are epoch milliseconds. */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public record Holder(String token, String host, long pid, String user, String command, long since, long heartbeat) {
    /** "pid 1234 on host h (user u, `run wf.yaml`), since …, last heartbeat 3s ago". */
    public String describe(long nowMillis) {
      return "pid " + pid + " on host " + host + " (user " + user + ", `" + command + "`), since "
          + Instant.ofEpochMilli(since) + ", last heartbeat " + Math.max(0, (nowMillis - heartbeat) / 1000) + "s ago";
    }

    Holder beat(long now) {
      return new Holder(token, host, pid, user, command, since, now);
    }
  }

  private final FileSystem fs;
  private final Path path;
  private volatile Holder holder;
  private final ScheduledExecutorService heartbeats;
  private volatile boolean lost;

  private Lease(FileSystem fs, Path path, Holder holder, Duration heartbeat) {
    this.fs = fs;
    this.path = path;
    this.holder = holder;
    this.heartbeats =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "stagecraft-lease-heartbeat");
              t.setDaemon(true);
              return t;
            });
    long ms = heartbeat.toMillis();
    heartbeats.scheduleWithFixedDelay(this::beat, ms, ms, TimeUnit.MILLISECONDS);
  }

  /**
   * Takes the lease at {@code path}.
   *
   * @param what what the lease guards, for messages ("run 'r1'")
   * @param command what this process is doing, shown to anyone refused
   * @throws StagecraftException (user) naming the holder if a live process holds it
   */
  public static Lease acquire(
      FileSystem fs, Path path, String what, String command, Duration staleAfter, Duration heartbeat) {
    Holder me = new Holder(UUID.randomUUID().toString(), host(), ProcessHandle.current().pid(),
        System.getProperty("user.name", "?"), command, System.currentTimeMillis(), System.currentTimeMillis());
    try {
      for (int tries = 0; tries < 3; tries++) {
        if (AtomicFiles.createExclusive(fs, path, Json.MAPPER.writeValueAsBytes(me))) {
          return new Lease(fs, path, me, heartbeat);
        }
        Optional<Holder> other = read(fs, path);
        long now = System.currentTimeMillis();
        if (other.isEmpty()) {
          continue; // released between our attempt and the read
        }
        if (!isDead(other.get(), now, staleAfter)) {
          throw new StagecraftException(ErrorCategory.USER,
              "Cannot start " + what + ": it is live in another process: " + other.get().describe(now)
                  + ". Wait for it to end; if that process is gone, its lease expires "
                  + staleAfter.toSeconds() + "s after its last heartbeat.");
        }
        LOG.warn("Taking over the lease of {}: its holder {} ({})", what,
            exitedHere(other.get()) ? "exited" : "stopped sending heartbeats", other.get().describe(now));
        fs.delete(path, false);
      }
      throw new StagecraftException(ErrorCategory.USER, "Cannot start " + what + ": another process keeps taking its lease " + path);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot take the lease %s: %s", path, e.getMessage());
    }
  }

  /** The live holder of the lease at {@code path}, if there is one. */
  public static Optional<Holder> liveHolder(FileSystem fs, Path path, Duration staleAfter) {
    try {
      long now = System.currentTimeMillis();
      return read(fs, path).filter(h -> !isDead(h, now, staleAfter));
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read the lease %s: %s", path, e.getMessage());
    }
  }

  /**
   * A holder is dead when its heartbeat is stale, or at once when it ran on this host and its process is gone (a
   * killed driver: `run --resume` need not wait for the lease to expire). A process id reused by a process started
   * after the lease was taken does not count as the holder.
   */
  static boolean isDead(Holder h, long now, Duration staleAfter) {
    return now - h.heartbeat() >= staleAfter.toMillis() || exitedHere(h);
  }

  private static boolean exitedHere(Holder h) {
    if (h.pid() <= 0 || !host().equals(h.host())) {
      return false;
    }
    Optional<ProcessHandle> p = ProcessHandle.of(h.pid());
    if (p.isEmpty() || !p.get().isAlive()) {
      return true;
    }
    return p.get().info().startInstant().map(t -> t.toEpochMilli() > h.since() + 1_000).orElse(false);
  }

  /** This holder's token: what a process this one launched shows to run under this lease. */
  public String token() {
    return holder.token();
  }

  /** True if another process took this lease over (this one missed its heartbeats). */
  public boolean lost() {
    return lost;
  }

  private void beat() {
    try {
      Optional<Holder> current = read(fs, path);
      if (current.isEmpty() || !current.get().token().equals(holder.token())) {
        lost = true;
        LOG.error("Lost the lease {}: another process took it over", path);
        heartbeats.shutdown();
        return;
      }
      holder = holder.beat(System.currentTimeMillis());
      AtomicFiles.write(fs, path, Json.MAPPER.writeValueAsBytes(holder));
    } catch (IOException | RuntimeException e) {
      LOG.warn("Cannot renew the lease {} (will retry): {}", path, e.toString());
    }
  }

  /** Stops the heartbeat and deletes the lease file if this process still holds it. */
  @Override
  public void close() {
    heartbeats.shutdownNow();
    try {
      heartbeats.awaitTermination(5, TimeUnit.SECONDS);
      Optional<Holder> current = read(fs, path);
      if (current.isPresent() && current.get().token().equals(holder.token())) {
        fs.delete(path, false);
      }
    } catch (IOException e) {
      LOG.warn("Cannot release the lease {} (it expires by itself): {}", path, e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static Optional<Holder> read(FileSystem fs, Path path) throws IOException {
    Optional<byte[]> bytes = AtomicFiles.read(fs, path);
    if (bytes.isEmpty()) {
      return Optional.empty();
    }
    try {
      return Optional.of(Json.MAPPER.readValue(bytes.get(), Holder.class));
    } catch (IOException e) {
      // An object store may show a file still being written as empty: treat it as live, just born.
      long now = System.currentTimeMillis();
      return Optional.of(new Holder("?", "?", -1, "?", "unreadable lease " + path, now, now));
    }
  }

  private static String host() {
    try {
      return InetAddress.getLocalHost().getHostName();
    } catch (IOException e) {
      return "unknown-host";
    }
  }
}
