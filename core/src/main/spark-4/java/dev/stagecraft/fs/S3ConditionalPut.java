package dev.stagecraft.fs;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.util.EnumSet;
import java.util.Map;
import java.util.UUID;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.s3a.S3AFileSystem;
import org.apache.hadoop.fs.s3a.api.RequestFactory;
import org.apache.hadoop.fs.s3a.impl.PutObjectOptions;
import org.apache.hadoop.fs.s3a.impl.write.WriteObjectFlags;
import org.apache.hadoop.fs.store.audit.AuditSpan;
import software.amazon.awssdk.awscore.exception.AwsServiceException;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.PutObjectRequest;

/**
 * Exclusive create on S3 for the Spark 4 line (Hadoop 3.5 S3A, AWS SDK v2): one PUT with {@code If-None-Match: *},
 * which the store evaluates atomically (AWS S3 since August 2024; other S3 servers vary, see
 * {@link AtomicFiles#exclusiveCreateUnsupported}). Loaded only for {@code s3a:} file systems ({@link AtomicFiles#isS3a}):
 * hadoop-aws is optional.
 *
 * <p>Why not S3A's own conditional create ({@code createFile(path)} with {@code fs.option.create.conditional.overwrite},
 * which skips the HEAD and LIST probes and sends the same PUT): S3A sends that PUT through its retry loop
 * ({@code WriteOperationHelper.putObject}, declared idempotent), which re-sends it after a 500, a throttle or a lost
 * connection. A conditional PUT is not idempotent: if the first one was stored but its answer lost, the re-sent one
 * gets 412 and a creator that won would be told it lost. So, as on the Spark 3.5 line, the request is built by S3A's
 * request factory (its encryption, ACL, storage class and checksum settings apply) and sent with its client
 * (credentials, endpoint, connection pool, the SDK's own retries) inside an S3A audit span, bypassing only S3A's retry
 * loop. The SDK's own retries remain; a 412 after more than one SDK attempt is checked against the object's writer
 * token (see {@link #createdByUs}).
 *
 * <p>How S3 answers map to the contract (the SDK throws {@link AwsServiceException} with the HTTP status; S3A's
 * translation, which this bypasses, would give {@code RemoteFileChangedException}, {@code AWSBadRequestException} and
 * {@code AWSUnsupportedFeatureException} for the same three):
 *
 * <ul>
 *   <li>412 Precondition Failed: an object is at the key, so this call did not create it: false. The SDK does not retry
 *       a 412, so it answers this call's only attempt, unless an earlier attempt failed in a way the SDK retries.
 *   <li>409 ConditionalRequestConflict: another conditional write of the key was in flight and S3 applied neither this
 *       one nor anything on its behalf; S3 asks the caller to retry. The SDK does not retry 409, so this class does,
 *       with backoff.
 *   <li>501 Not Implemented: the server lacks conditional writes: {@link AtomicFiles.ExclusiveCreateUnsupported}.
 * </ul>
 */
final class S3ConditionalPut {
  /** S3A's switch (Hadoop 3.4.2+, default true) saying the store takes conditional writes; honoured here too. */
  static final String CONDITIONAL_CREATE_ENABLED = "fs.s3a.create.conditional.enabled";

  private S3ConditionalPut() {}

  /**
   * PUTs {@code data} at {@code path} unless an object is there.
   *
   * @return true if this call created the object, false if one existed
   * @throws AtomicFiles.ExclusiveCreateUnsupported if the server does not implement conditional writes (501), or
   *     {@value #CONDITIONAL_CREATE_ENABLED} is false for the bucket
   */
  static boolean create(FileSystem fs, Path path, byte[] data) throws IOException {
    S3AFileSystem s3a = (S3AFileSystem) fs;
    // S3A has merged the bucket's own options (fs.s3a.bucket.NAME.…) into its configuration.
    if (!s3a.getConf().getBoolean(CONDITIONAL_CREATE_ENABLED, true)) {
      throw new AtomicFiles.ExclusiveCreateUnsupported(CONDITIONAL_CREATE_ENABLED + " is false for bucket "
          + s3a.getBucket() + " (S3A's switch for a store without conditional writes)");
    }
    String key = s3a.pathToKey(fs.makeQualified(path));
    String writer = UUID.randomUUID().toString();
    RequestFactory requests = s3a.getRequestFactory();
    S3Client client = s3a.getS3AInternals().getAmazonS3Client("conditional create");
    PutObjectOptions options =
        new PutObjectOptions(null, Map.of(ConditionalPutAnswer.WRITER, writer), EnumSet.noneOf(WriteObjectFlags.class), null);
    // An audit span: without one the request runs in S3A's "unbonded" span, which fs.s3a.audit.reject.out.of.span.
    // operations=true refuses.
    try (AuditSpan span = s3a.createSpan("stagecraft_create_exclusive", key, null)) {
      for (int attempt = 1; ; attempt++) {
        PutObjectRequest put = requests.newPutObjectRequestBuilder(key, options, data.length, false)
            .ifNoneMatch("*")
            .build();
        try {
          client.putObject(put, RequestBody.fromBytes(data));
          return true;
        } catch (AwsServiceException e) {
          if (ConditionalPutAnswer.of(path, e.statusCode(), errorCode(e), attempt, e) == ConditionalPutAnswer.RETRY) {
            continue;
          }
          return sdkAttempts(e) > 1 && createdByUs(s3a, path, writer);
        } catch (SdkException e) {
          throw new IOException("Cannot create " + path + ": " + e.getMessage(), e);
        }
      }
    }
  }

  /**
   * After a 412 that followed an earlier attempt of the same PUT (a 500, 503 or lost connection the SDK retried), the
   * object may be this call's own: the earlier attempt stored it and only its answer was lost. The object's writer
   * token says whose it is (read with S3A's HEAD).
   */
  private static boolean createdByUs(S3AFileSystem s3a, Path path, String writer) throws IOException {
    try {
      return writer.equals(s3a.getObjectMetadata(path).metadata().get(ConditionalPutAnswer.WRITER));
    } catch (FileNotFoundException e) {
      return false; // created, by someone, and deleted since: it existed
    }
  }

  /** How many requests the SDK sent for the failed call; unknown counts as more than one (check, do not assume). */
  private static int sdkAttempts(SdkException e) {
    Integer n = e.numAttempts();
    return n == null ? Integer.MAX_VALUE : n;
  }

  private static String errorCode(AwsServiceException e) {
    return e.awsErrorDetails() == null ? "no error code" : e.awsErrorDetails().errorCode();
  }
}
