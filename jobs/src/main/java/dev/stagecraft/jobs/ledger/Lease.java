package dev.stagecraft.jobs.ledger;

import com.fasterxml.jackson.annotation.JsonInclude;
import dev.stagecraft.fs.AtomicFiles;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.Files;
import java.time.Duration;
import java.time.Instant;
import java.util.Arrays;
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
 * An exclusive claim on a run (or a step of it) by one live process, kept in the workspace as a folder of
 * {@link Generations}: each holder is one generation, its <em>epoch</em>, a fencing token that only grows.
 *
 * <ul>
 *   <li><b>Taking it</b> is one exclusive create of the next epoch, when the newest holder released it, provably
 *       exited, or went stale. Of any number of processes racing, exactly one creates it; nothing is ever deleted to
 *       take a lease.
 *   <li><b>Staleness</b> is judged by watching the holder's own record: a holder rewrites its epoch's file every
 *       {@code heartbeat} with a growing count, and a record seen unchanged for {@code staleAfter} (by this process's
 *       monotonic clock) is stale. Clocks of two machines are never compared to take a lease, only to refuse one
 *       quickly (a heartbeat that looks recent means "live"). Whether the holder's process is gone is decided at once
 *       only where it can be: same kernel boot and same PID namespace (a container on this host has another); other
 *       holders are live until their record goes stale.
 *   <li><b>Losing it</b>: the heartbeat finds a newer epoch, or could not renew the record for {@code staleAfter}.
 *       {@link #checkHeld} then throws {@link LeaseLostException} naming the new holder; the ledger refuses this
 *       epoch's updates once a newer one wrote (see {@link Fence}), so a holder that lost its lease commits nothing.
 *   <li><b>Releasing</b> marks the holder's own record released; only the holder writes its epoch's file.
 * </ul>
 */
public final class Lease implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Lease.class);

  public static final Duration DEFAULT_STALE_AFTER = Duration.ofSeconds(60);
  public static final Duration DEFAULT_HEARTBEAT = Duration.ofSeconds(10);
  private static final int TAKE_ATTEMPTS = 8;

  /**
   * Who holds (or held) one epoch of a lease. Times are epoch milliseconds of the holder's clock, for people.
   *
   * @param machine the holder's kernel boot id and PID namespace: where its pid means something
   * @param beats how many heartbeats it wrote: what an observer watches
   * @param released true once the holder let go (or, for a holder that never ran, once it was retired)
   */
  @JsonInclude(JsonInclude.Include.NON_NULL)
  public record Holder(String token, long epoch, String host, String machine, long pid, String user, String command,
      long since, long heartbeat, long beats, boolean released) {
    /** "pid 1234 on host h (user u, `run wf.yaml`), since …, last heartbeat 3s ago". */
    public String describe(long nowMillis) {
      return "pid " + pid + " on host " + host + " (user " + user + ", `" + command + "`), since "
          + Instant.ofEpochMilli(since) + ", last heartbeat " + Math.max(0, (nowMillis - heartbeat) / 1000) + "s ago";
    }

    Holder beat(long now) {
      return new Holder(token, epoch, host, machine, pid, user, command, since, now, beats + 1, released);
    }

    Holder release(long now) {
      return new Holder(token, epoch, host, machine, pid, user, command, since, now, beats + 1, true);
    }
  }

  private final FileSystem fs;
  private final Path dir;
  private final String name;
  private final Duration staleAfter;
  private final ScheduledExecutorService heartbeats;
  private volatile Holder holder;
  /** When the record was last written (System.nanoTime). */
  private volatile long renewedNanos;
  /** Set once a newer epoch exists: who holds it. */
  private volatile String lostTo;

  private Lease(FileSystem fs, Path dir, String name, Holder holder, Duration staleAfter, Duration heartbeat) {
    this.fs = fs;
    this.dir = dir;
    this.name = name;
    this.holder = holder;
    this.staleAfter = staleAfter;
    this.renewedNanos = System.nanoTime();
    this.heartbeats = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "stagecraft-lease-heartbeat");
      t.setDaemon(true);
      return t;
    });
    long ms = heartbeat.toMillis();
    heartbeats.scheduleWithFixedDelay(this::beat, ms, ms, TimeUnit.MILLISECONDS);
  }

  /**
   * Takes the lease kept in {@code dir}.
   *
   * @param name the lease's name in the ledger's fences ("run", "step:train")
   * @param what what the lease guards, for messages ("run 'r1'")
   * @param command what this process is doing, shown to anyone refused
   * @throws StagecraftException (user) naming the holder if a live process holds it
   */
  public static Lease acquire(FileSystem fs, Path dir, String name, String what, String command, Duration staleAfter,
      Duration heartbeat) {
    String refusal = "Cannot start " + what + ": it is live in another process";
    try {
      for (int attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
        long next = takeable(fs, dir, refusal, what, staleAfter);
        long now = System.currentTimeMillis(); // after any watching: a new holder's heartbeat is fresh
        Holder me = new Holder(UUID.randomUUID().toString(), next, host(), machine(), ProcessHandle.current().pid(),
            System.getProperty("user.name", "?"), command, now, now, 0, false);
        if (Generations.create(fs, dir, next, Json.MAPPER.writeValueAsBytes(me))) {
          return new Lease(fs, dir, name, me, staleAfter, heartbeat);
        }
        // Another process created this epoch first: judge it as any holder.
      }
      throw new StagecraftException(ErrorCategory.USER, "Cannot start " + what + ": other processes keep taking its "
          + "lease " + dir);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot take the lease %s: %s", dir, e.getMessage());
    }
  }

  /**
   * Makes sure nobody holds the lease in {@code dir} any more: a released (or never taken) lease is left as it is; a
   * stale or exited holder's is retired by creating the next epoch, released, so that holder is fenced off.
   *
   * @param refusal what to say if a live process holds it ("Cannot start run 'r1': its step 's' is live in another
   *     process"); the holder follows
   * @return the retired epoch, if this call created one: the ledger must learn it (see {@link Fence#claiming})
   * @throws StagecraftException (user) naming the holder if a live process holds it
   */
  public static Optional<Long> retire(FileSystem fs, Path dir, String refusal, Duration staleAfter) {
    try {
      for (int attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
        Optional<Epoch> newest = newest(fs, dir);
        if (newest.isEmpty() || newest.get().holder().map(Holder::released).orElse(false)) {
          return Optional.empty();
        }
        long next = takeable(fs, dir, refusal, dir.toString(), staleAfter);
        long now = System.currentTimeMillis();
        Holder tombstone = new Holder("retired-" + UUID.randomUUID(), next, host(), machine(),
            ProcessHandle.current().pid(), System.getProperty("user.name", "?"), "retired its stale holder", now, now,
            0, true);
        if (Generations.create(fs, dir, next, Json.MAPPER.writeValueAsBytes(tombstone))) {
          return Optional.of(next);
        }
      }
      throw new StagecraftException(ErrorCategory.USER, "Cannot start: other processes keep taking the lease " + dir);
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot retire the lease %s: %s", dir, e.getMessage());
    }
  }

  /** The holder of the lease in {@code dir} that is not released, exited or stale by its heartbeat's age. */
  public static Optional<Holder> liveHolder(FileSystem fs, Path dir, Duration staleAfter) {
    try {
      long now = System.currentTimeMillis();
      return newest(fs, dir).flatMap(Epoch::holder)
          .filter(h -> !h.released() && !exitedHere(h) && now - h.heartbeat() < staleAfter.toMillis());
    } catch (IOException e) {
      throw StagecraftException.external(e, "Cannot read the lease %s: %s", dir, e.getMessage());
    }
  }

  /** The newest holder's description, for messages naming who took a lease over. */
  static String describeNewest(FileSystem fs, Path dir) {
    try {
      long now = System.currentTimeMillis();
      return newest(fs, dir).map(e -> "epoch " + e.number() + ", "
          + e.holder().map(h -> h.describe(now)).orElse("an unreadable record")).orElse("nobody");
    } catch (IOException e) {
      return "(cannot read " + dir + ": " + e.getMessage() + ")";
    }
  }

  /**
   * The epoch a process may create now: 1 for a new lease, else the newest epoch + 1 once its holder released it,
   * exited or went stale (watched for {@code staleAfter} when the record's age alone cannot tell).
   */
  private static long takeable(FileSystem fs, Path dir, String refusal, String what, Duration staleAfter)
      throws IOException {
    Optional<Epoch> newest = newest(fs, dir);
    if (newest.isEmpty()) {
      return 1;
    }
    Epoch e = newest.get();
    long now = System.currentTimeMillis();
    if (e.holder().isPresent()) {
      Holder h = e.holder().get();
      if (h.released()) {
        return e.number() + 1;
      }
      if (exitedHere(h)) {
        LOG.warn("Taking over the lease of {}: its holder exited ({})", what, h.describe(now));
        return e.number() + 1;
      }
      if (now - h.heartbeat() < staleAfter.toMillis()) {
        throw refused(refusal, h, staleAfter, now);
      }
    }
    // The record looks old, or cannot be read: watch it before deciding.
    String who = e.holder().map(h -> h.describe(now)).orElse("an unreadable record " + e.path());
    LOG.warn("The lease of {} looks stale ({}); watching it for {}s before taking it over", what, who,
        staleAfter.toSeconds());
    byte[] seen = e.bytes();
    long watchFrom = System.nanoTime();
    while (System.nanoTime() - watchFrom < staleAfter.toNanos()) {
      sleep(Math.max(50, Math.min(1000, staleAfter.toMillis() / 10)));
      Optional<Epoch> again = newest(fs, dir);
      if (again.isEmpty() || again.get().number() != e.number()) {
        return takeable(fs, dir, refusal, what, staleAfter); // someone else moved first: judge the new holder
      }
      if (!Arrays.equals(again.get().bytes(), seen)) {
        Holder h = again.get().holder().orElseThrow(() -> refused(refusal, null, staleAfter, now));
        if (h.released()) {
          return e.number() + 1;
        }
        throw refused(refusal, h, staleAfter, System.currentTimeMillis()); // it is still sending heartbeats
      }
    }
    LOG.warn("Taking over the lease of {}: its holder sent no heartbeat for {}s ({})", what, staleAfter.toSeconds(),
        who);
    return e.number() + 1;
  }

  private static StagecraftException refused(String refusal, Holder h, Duration staleAfter, long now) {
    return new StagecraftException(ErrorCategory.USER, refusal + ": "
        + (h == null ? "(unreadable lease)" : h.describe(now)) + ". Wait for it to end; if that process is gone, its "
        + "lease goes stale " + staleAfter.toSeconds() + "s after its last heartbeat.");
  }

  /** Whether this holder's process is known to be gone: only decidable on this machine and in this PID namespace. */
  static boolean exitedHere(Holder h) {
    if (h.pid() <= 0 || h.machine() == null || !h.machine().equals(machine())) {
      return false;
    }
    Optional<ProcessHandle> p = ProcessHandle.of(h.pid());
    if (p.isEmpty() || !p.get().isAlive()) {
      return true;
    }
    // A pid reused by a process started after the lease was taken is not the holder.
    return p.get().info().startInstant().map(t -> t.toEpochMilli() > h.since() + 1_000).orElse(false);
  }

  /** This holder's token: what a process this one launched shows to run under this lease. */
  public String token() {
    return holder.token();
  }

  /** This holder's epoch (fencing token). */
  public long epoch() {
    return holder.epoch();
  }

  /** The lease's name in the ledger's fences. */
  public String name() {
    return name;
  }

  /** Where the lease lives. */
  public Path dir() {
    return dir;
  }

  /** True if another process took this lease over (this one missed its heartbeats). */
  public boolean lost() {
    return lostTo != null;
  }

  /**
   * Throws {@link LeaseLostException} if this process no longer holds the lease: a newer epoch exists, or the record
   * was last renewed longer than {@code staleAfter} ago (then the store is asked).
   */
  public void checkHeld() {
    if (lostTo == null && System.nanoTime() - renewedNanos >= staleAfter.toNanos()) {
      lookForNewerHolder();
    }
    if (lostTo != null) {
      throw new LeaseLostException(name, holder.epoch(), lostTo);
    }
  }

  private void lookForNewerHolder() {
    try {
      if (Generations.exists(fs, dir, holder.epoch() + 1)) {
        lostTo = describeNewest(fs, dir);
        LOG.error("Lost the lease {} (epoch {}): another process took it over: {}", dir, holder.epoch(), lostTo);
        heartbeats.shutdown();
      }
    } catch (IOException e) {
      LOG.warn("Cannot check the lease {} (will retry): {}", dir, e.toString());
    }
  }

  private void beat() {
    try {
      lookForNewerHolder();
      if (lostTo != null) {
        return;
      }
      Holder next = holder.beat(System.currentTimeMillis());
      AtomicFiles.write(fs, Generations.path(dir, next.epoch()), Json.MAPPER.writeValueAsBytes(next));
      holder = next;
      renewedNanos = System.nanoTime();
    } catch (IOException | RuntimeException e) {
      LOG.warn("Cannot renew the lease {} (will retry): {}", dir, e.toString());
    }
  }

  /** Stops the heartbeat and marks this epoch released, unless a newer holder took it over. */
  @Override
  public void close() {
    heartbeats.shutdownNow();
    try {
      heartbeats.awaitTermination(5, TimeUnit.SECONDS);
      if (lostTo == null && !Generations.exists(fs, dir, holder.epoch() + 1)) {
        Holder released = holder.release(System.currentTimeMillis());
        AtomicFiles.write(fs, Generations.path(dir, released.epoch()), Json.MAPPER.writeValueAsBytes(released));
      }
    } catch (IOException e) {
      LOG.warn("Cannot release the lease {} (it goes stale by itself): {}", dir, e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** One epoch's file: its number, its bytes and, if they parse, its holder. */
  private record Epoch(long number, Path path, byte[] bytes, Optional<Holder> holder) {}

  private static Optional<Epoch> newest(FileSystem fs, Path dir) throws IOException {
    for (long n : Generations.list(fs, dir)) {
      Path p = Generations.path(dir, n);
      Optional<byte[]> bytes = AtomicFiles.read(fs, p);
      if (bytes.isEmpty()) {
        continue; // deleted by hand between the listing and the read
      }
      Optional<Holder> h;
      try {
        h = Optional.of(Json.MAPPER.readValue(bytes.get(), Holder.class));
      } catch (IOException e) {
        h = Optional.empty();
      }
      return Optional.of(new Epoch(n, p, bytes.get(), h));
    }
    return Optional.empty();
  }

  private static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new StagecraftException(ErrorCategory.INTERNAL, "Interrupted while watching a lease", e);
    }
  }

  private static String host() {
    try {
      return InetAddress.getLocalHost().getHostName();
    } catch (IOException e) {
      return "unknown-host";
    }
  }

  private static volatile String machine;

  /**
   * This kernel's boot id and this process's PID namespace ("boot-id/pid:[4026531836]"): two processes with the same
   * value see the same pids. Null where either cannot be read (not Linux): then no holder is judged exited by pid.
   */
  static String machine() {
    String m = machine;
    if (m == null) {
      try {
        String boot = Files.readString(java.nio.file.Path.of("/proc/sys/kernel/random/boot_id")).strip();
        String ns = Files.readSymbolicLink(java.nio.file.Path.of("/proc/self/ns/pid")).toString();
        m = boot + "/" + ns;
      } catch (IOException | UnsupportedOperationException | SecurityException e) {
        m = "";
      }
      machine = m;
    }
    return m.isEmpty() ? null : m;
  }

}
