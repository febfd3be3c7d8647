package dev.stagecraft.jobs.ledger;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The lease epochs a ledger writer holds, checked by every ledger update ({@link LedgerStore#fenced}).
 *
 * <p>The ledger keeps, per lease name, the newest epoch that wrote it ({@link RunLedger#fences()}). An update by a
 * writer whose epoch for one of its leases is older is refused with {@link LeaseLostException}: a process that lost
 * its lease cannot commit an output, mark a step or delete what the ledger names, even if it never noticed. Since
 * every update is an exclusive create of the ledger's next generation, the check and the write are one atomic step.
 *
 * @param claims lease name → the epoch this writer holds (or retired)
 * @param lease the lease this process holds and renews, checked first (empty in a step launched under another
 *     process's lease, and in tools that only read)
 */
public record Fence(Map<String, Claim> claims, Optional<Lease> lease) {
  /** An epoch of the lease kept in {@code dir} (in the ledger's store, beside the ledger). */
  public record Claim(long epoch, Path dir) {}

  /** No lease: tools and tests that write ledgers outside a run. */
  public static final Fence NONE = new Fence(Map.of(), Optional.empty());

  public Fence {
    claims = Map.copyOf(claims);
  }

  /** The fence of a process holding {@code lease}. */
  public static Fence of(Lease lease) {
    return new Fence(Map.of(lease.name(), new Claim(lease.epoch(), lease.dir())), Optional.of(lease));
  }

  /**
   * This fence, also claiming {@code epoch} of {@code name}: a stale holder's lease this process retired, or the
   * launching run's lease a step runs under.
   */
  public Fence claiming(String name, long epoch, Path dir) {
    Map<String, Claim> more = new LinkedHashMap<>(claims);
    more.put(name, new Claim(epoch, dir));
    return new Fence(more, lease);
  }

  /** Throws {@link LeaseLostException} if this process's lease is lost. */
  public void checkHeld() {
    lease.ifPresent(Lease::checkHeld);
  }

  /** Throws {@link LeaseLostException} if the ledger was written under a newer epoch of one of the claimed leases. */
  void check(RunLedger current, FileSystem fs) {
    checkHeld();
    if (current == null) {
      return;
    }
    claims.forEach((name, claim) -> {
      long newest = current.fences().getOrDefault(name, 0L);
      if (newest > claim.epoch()) {
        throw new LeaseLostException(name, claim.epoch(), Lease.describeNewest(fs, claim.dir()));
      }
    });
  }

  /** {@code next} with this fence's epochs recorded. */
  RunLedger stamp(RunLedger next) {
    if (claims.isEmpty()) {
      return next;
    }
    Map<String, Long> fences = new LinkedHashMap<>(next.fences());
    claims.forEach((name, claim) -> fences.merge(name, claim.epoch(), Math::max));
    return next.withFences(fences);
  }
}
