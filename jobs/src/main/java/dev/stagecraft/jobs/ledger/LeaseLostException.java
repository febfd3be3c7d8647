package dev.stagecraft.jobs.ledger;

import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;

/**
 * This process no longer holds the lease it ran under: another process took it over (this one was paused, cut off
 * from the store, or its heartbeats stalled). Nothing this process does afterwards is committed; the run goes on in
 * the new holder.
 */
public final class LeaseLostException extends StagecraftException {
  private static final long serialVersionUID = 1L;

  public LeaseLostException(String lease, long epoch, String newHolder) {
    super(ErrorCategory.EXTERNAL, "Lost the " + lease + " lease (epoch " + epoch + ") to another process: "
        + newHolder + ". This process commits nothing more and stops; the run continues there.");
  }
}
