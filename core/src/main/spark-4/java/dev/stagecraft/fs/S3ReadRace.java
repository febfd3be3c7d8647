package dev.stagecraft.fs;

import java.io.IOException;
import software.amazon.awssdk.awscore.exception.AwsServiceException;

/**
 * How the Spark 4 line's S3A (Hadoop 3.5) reports an object replaced while it was read. Loaded only for {@code s3a:}
 * file systems (see {@link AtomicFiles#isS3a}).
 */
final class S3ReadRace {
  private static final int PRECONDITION_FAILED = 412;

  private S3ReadRace() {}

  /**
   * True if {@code e} says the object changed under an open stream. S3A's default input stream in Hadoop 3.5 is the
   * Analytics Accelerator Library's ({@code fs.s3a.input.stream.type=analytics}): it reads with GETs carrying
   * {@code If-Match} of the ETag S3A's HEAD found when the file was opened, and reports a replaced object as a plain
   * IOException ("Server error accessing …") caused by the SDK's 412. (The {@code classic} stream reports
   * {@code RemoteFileChangedException}, which {@link AtomicFiles} recognises on both lines.)
   */
  static boolean objectReplaced(IOException e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof AwsServiceException s && s.statusCode() == PRECONDITION_FAILED) {
        return true;
      }
    }
    return false;
  }
}
