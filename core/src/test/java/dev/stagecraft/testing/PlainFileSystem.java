package dev.stagecraft.testing;

import java.io.File;
import java.net.URI;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;

/**
 * The local file system under the scheme {@code plain:}: a stand-in for a store Stagecraft cannot create files
 * exclusively on (in production an object store without conditional writes; every S3 server these tests run has
 * them), for the tests of what Stagecraft does there: say so and refuse.
 */
public final class PlainFileSystem extends RawLocalFileSystem {
  /** Makes {@code plain:} reach this class in {@code conf}; returns {@code dir} as a {@code plain:} path. */
  public static Path register(Configuration conf, java.nio.file.Path dir) {
    conf.setClass("fs.plain.impl", PlainFileSystem.class, FileSystem.class);
    conf.setBoolean("fs.plain.impl.disable.cache", true);
    return new Path("plain://" + dir.toAbsolutePath().toUri().getPath());
  }

  @Override
  public URI getUri() {
    return URI.create("plain:///");
  }

  @Override
  public String getScheme() {
    return "plain";
  }

  @Override
  public File pathToFile(Path path) {
    return new File(path.toUri().getPath());
  }
}
