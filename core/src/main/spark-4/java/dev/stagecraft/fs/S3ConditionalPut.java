package dev.stagecraft.fs;

import java.io.IOException;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FSDataOutputStreamBuilder;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Exclusive create on S3 for the Spark 4 line (Hadoop 3.5 S3A, AWS SDK v2): S3A sends the PUT with
 * {@code If-None-Match: *} itself when the create builder asks for {@value #CONDITIONAL_OVERWRITE} (and
 * {@code fs.s3a.create.conditional.enabled}, default true, allows it). The store evaluates it atomically (AWS S3 since
 * August 2024; other S3 servers vary, see {@link AtomicFiles#exclusiveCreateUnsupported}). The Spark 3.5 line's S3A
 * (Hadoop 3.3.4) cannot, and its twin of this class sends the request through S3A's SDK v1 client instead.
 */
final class S3ConditionalPut {
  /** The create option (Hadoop 3.4.2+) that makes S3A's PUT conditional on no object being at the key. */
  static final String CONDITIONAL_OVERWRITE = "fs.option.create.conditional.overwrite";

  private S3ConditionalPut() {}

  static boolean isS3a(FileSystem fs) {
    return fs.getClass().getName().equals("org.apache.hadoop.fs.s3a.S3AFileSystem");
  }

  /**
   * PUTs {@code data} at {@code path} unless an object is there.
   *
   * @return true if this call created the object, false if one existed
   * @throws AtomicFiles.ExclusiveCreateUnsupported if the server does not implement conditional writes (501)
   */
  static boolean create(FileSystem fs, Path path, byte[] data) throws IOException {
    FSDataOutputStreamBuilder<FSDataOutputStream, ?> builder = fs.createFile(path);
    builder.overwrite(false);
    builder.must(CONDITIONAL_OVERWRITE, true);
    try (FSDataOutputStream out = builder.build()) {
      out.write(data);
    } catch (FileAlreadyExistsException e) {
      return false;
    }
    return true;
  }
}
