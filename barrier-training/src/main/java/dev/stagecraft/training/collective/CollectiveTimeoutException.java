package dev.stagecraft.training.collective;

import java.util.List;

/**
 * A rank did not answer within the {@linkplain GroupSpec#connectTimeout() connect} or
 * {@linkplain GroupSpec#operationTimeout() operation} timeout: it did not connect, sent no data, or
 * did not accept data. {@link #ranks()} names it; the message names it and the operation.
 */
public class CollectiveTimeoutException extends CollectiveException {
  private static final long serialVersionUID = 1L;

  CollectiveTimeoutException(String message, List<Integer> ranks) {
    super(message, ranks);
  }

  CollectiveTimeoutException(String message, List<Integer> ranks, Throwable cause) {
    super(message, ranks, cause);
  }
}
