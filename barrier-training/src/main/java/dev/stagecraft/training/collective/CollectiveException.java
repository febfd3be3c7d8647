package dev.stagecraft.training.collective;

import java.util.List;

/**
 * A collective operation or the connection setup failed. {@link #ranks()} names the ranks the failure is attributed
 * to (the rank that closed its connection, sent unexpected data, or did not answer); it is empty when the cause is
 * local (for example the communicator was closed by another thread). After this exception the communicator is
 * unusable: every later operation fails fast.
 */
public class CollectiveException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final List<Integer> ranks;

  CollectiveException(String message, List<Integer> ranks) {
    this(message, ranks, null);
  }

  CollectiveException(String message, List<Integer> ranks, Throwable cause) {
    super(message, cause);
    this.ranks = List.copyOf(ranks);
  }

  /** The ranks this failure is attributed to, possibly empty; never null. */
  public List<Integer> ranks() {
    return ranks;
  }
}
