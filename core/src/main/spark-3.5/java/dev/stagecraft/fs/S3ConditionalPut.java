package dev.stagecraft.fs;

import com.amazonaws.event.DeliveryMode;
import com.amazonaws.event.ProgressEvent;
import com.amazonaws.event.ProgressEventType;
import com.amazonaws.event.ProgressListener;
import com.amazonaws.services.s3.AmazonS3;
import com.amazonaws.services.s3.model.AmazonS3Exception;
import com.amazonaws.services.s3.model.PutObjectRequest;
import java.io.ByteArrayInputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.lang.reflect.Method;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.s3a.S3AFileSystem;
import org.apache.hadoop.fs.s3a.WriteOperationHelper;

/**
 * Exclusive create on S3: one PUT with {@code If-None-Match: *}, which the store evaluates atomically (AWS S3 since
 * August 2024; other S3 servers vary, see {@link AtomicFiles#exclusiveCreateUnsupported}).
 *
 * <p>S3A 3.3.4 cannot send it ({@code create(path, false)} is a HEAD, then a PUT: two creators racing within a
 * request's time both win), so the request is built by S3A's own request factory (its encryption, ACL and storage
 * class settings apply) and sent with its client (credentials, endpoint, connection pool), bypassing only S3A's
 * retry, which would turn the 412 into an error. (Hadoop 3.4.2 and later can send the conditional PUT themselves, but
 * through that retry loop too; the Spark 4 line's twin of this class says why it does not use it.) Loaded only for
 * {@code s3a:} file systems ({@link AtomicFiles#isS3a}): hadoop-aws is optional.
 *
 * <p>The SDK's own retries remain: a PUT answered with a 500, a throttle or a lost connection is sent again, and if the
 * first one was stored the second gets 412. So a 412 after a retry is checked against the object's writer token (see
 * {@link #createdByUs}) instead of being taken as a loss.
 */
final class S3ConditionalPut {
  /** S3A's package-private client accessor, or null (see {@link #client}). */
  private static final Method CLIENT = clientAccessor();

  private S3ConditionalPut() {}

  /**
   * PUTs {@code data} at {@code path} unless an object is there.
   *
   * @return true if this call created the object, false if one existed
   * @throws AtomicFiles.ExclusiveCreateUnsupported if the server does not implement conditional writes (501)
   */
  static boolean create(FileSystem fs, Path path, byte[] data) throws IOException {
    S3AFileSystem s3a = (S3AFileSystem) fs;
    String key = s3a.pathToKey(fs.makeQualified(path));
    WriteOperationHelper writes = s3a.getWriteOperationHelper();
    AmazonS3 client = client(s3a);
    String writer = UUID.randomUUID().toString();
    for (int attempt = 1; ; attempt++) {
      PutObjectRequest put =
          writes.createPutObjectRequest(key, new ByteArrayInputStream(data), data.length, Map.of(ConditionalPutAnswer.WRITER, writer));
      put.putCustomRequestHeader("If-None-Match", "*");
      SdkRetries retries = new SdkRetries();
      put.setGeneralProgressListener(retries);
      try {
        client.putObject(put);
        return true;
      } catch (AmazonS3Exception e) {
        if (ConditionalPutAnswer.of(path, e.getStatusCode(), e.getErrorCode(), attempt, e) == ConditionalPutAnswer.RETRY) {
          continue;
        }
        return retries.count.get() > 0 && createdByUs(s3a, path, writer);
      } catch (com.amazonaws.AmazonClientException e) {
        throw new IOException("Cannot create " + path + ": " + e.getMessage(), e);
      }
    }
  }

  /**
   * After a 412 that followed a retried attempt of the same PUT, the object may be this call's own: the earlier attempt
   * stored it and only its answer was lost. The object's writer token says whose it is (read with S3A's HEAD).
   */
  private static boolean createdByUs(S3AFileSystem s3a, Path path, String writer) throws IOException {
    try {
      return writer.equals(s3a.getObjectMetadata(path).getUserMetaDataOf(ConditionalPutAnswer.WRITER));
    } catch (FileNotFoundException e) {
      return false; // created, by someone, and deleted since: it existed
    }
  }

  /**
   * Counts the SDK's retries of one request. Safe to call on the request's thread, so the SDK tells it before the
   * request returns or throws (other listeners are told later, from a pool).
   */
  private static final class SdkRetries implements ProgressListener, DeliveryMode {
    final AtomicInteger count = new AtomicInteger();

    @Override
    public void progressChanged(ProgressEvent event) {
      if (event.getEventType() == ProgressEventType.CLIENT_REQUEST_RETRY_EVENT) {
        count.incrementAndGet();
      }
    }

    @Override
    public boolean isSyncCallSafe() {
      return true;
    }
  }

  /**
   * S3A's own client. Its public accessor ({@code getAmazonS3ClientForTesting}) logs a warning on every call, so the
   * package-private one is used; a client whose build lacks it falls back to the public one.
   */
  private static AmazonS3 client(S3AFileSystem s3a) throws IOException {
    if (CLIENT != null) {
      try {
        return (AmazonS3) CLIENT.invoke(s3a);
      } catch (ReflectiveOperationException | RuntimeException e) {
        throw new IOException("Cannot reach S3A's client: " + e, e);
      }
    }
    return s3a.getAmazonS3ClientForTesting("conditional create");
  }

  private static Method clientAccessor() {
    try {
      Method m = S3AFileSystem.class.getDeclaredMethod("getAmazonS3Client");
      m.setAccessible(true);
      return m;
    } catch (ReflectiveOperationException | RuntimeException e) {
      return null;
    }
  }
}
