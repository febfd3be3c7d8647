package dev.stagecraft.fs;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.concurrent.ThreadLocalRandom;
import org.apache.hadoop.fs.Path;

/**
 * What an S3 error answer to a PUT with {@code If-None-Match: *} means, the same on both Spark lines (their
 * {@code S3ConditionalPut} twins differ only in the AWS SDK that sends the PUT).
 *
 * <ul>
 *   <li>412 Precondition Failed: an object is at the key ({@link #EXISTED}; the caller checks its writer token when
 *       the SDK had retried the PUT, see the twins).
 *   <li>409 ConditionalRequestConflict: another conditional write of the key was in flight; S3 asks the caller to
 *       retry ({@link #RETRY}, after a backoff pause), up to {@value #CONFLICT_RETRIES} attempts.
 *   <li>501 Not Implemented: the server lacks conditional writes ({@link AtomicFiles.ExclusiveCreateUnsupported}).
 *   <li>anything else: an IOException with the status and S3's error code (never the request's credentials).
 * </ul>
 */
enum ConditionalPutAnswer {
  EXISTED,
  RETRY;

  static final int PRECONDITION_FAILED = 412;
  static final int CONDITIONAL_CONFLICT = 409;
  static final int NOT_IMPLEMENTED = 501;
  /** User metadata ({@code x-amz-meta-stagecraft-writer}): a random token naming the call that wrote the object. */
  static final String WRITER = "stagecraft-writer";

  static final int CONFLICT_RETRIES = 8;

  /** Reads a failed attempt's answer; pauses before a {@link #RETRY}, throws for the answers that end the create. */
  static ConditionalPutAnswer of(Path path, int status, String errorCode, int attempt, Exception cause)
      throws IOException {
    switch (status) {
      case PRECONDITION_FAILED:
        return EXISTED;
      case NOT_IMPLEMENTED:
        throw new AtomicFiles.ExclusiveCreateUnsupported(
            "the S3 server answered 501 (" + errorCode + ") to a PUT with If-None-Match");
      case CONDITIONAL_CONFLICT:
        if (attempt < CONFLICT_RETRIES) {
          pause(attempt);
          return RETRY;
        }
        throw new IOException("Cannot create " + path + ": conditional writes kept conflicting (409) after "
            + attempt + " attempts", cause);
      default:
        throw new IOException("Cannot create " + path + ": " + status + " " + errorCode, cause);
    }
  }

  private static void pause(int attempt) throws InterruptedIOException {
    try {
      Thread.sleep(ThreadLocalRandom.current().nextLong(10, 20L << Math.min(attempt, 6)));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new InterruptedIOException("interrupted while retrying a conditional write");
    }
  }
}
