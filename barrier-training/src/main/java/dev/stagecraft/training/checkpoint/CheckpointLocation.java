package dev.stagecraft.training.checkpoint;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * Where a step's checkpoints live, in a form that travels to the executors with the task: the folder's URI and the
 * driver's Hadoop configuration (so executors reach HDFS or S3 with the same settings and credentials the driver has;
 * Spark ships its own Hadoop configuration to tasks the same way). Never printed: {@link #toString()} shows the URI
 * only.
 */
public final class CheckpointLocation implements Serializable {
  private static final long serialVersionUID = 1L;
  private final String uri;
  private final int keep;
  private final byte[] conf;

  public CheckpointLocation(String uri, int keep, Configuration conf) {
    this.uri = uri;
    this.keep = keep;
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      conf.write(out);
    } catch (IOException e) {
      throw new UncheckedIOException(e); // in memory
    }
    this.conf = bytes.toByteArray();
  }

  public String uri() {
    return uri;
  }

  public Configuration configuration() {
    Configuration c = new Configuration(false);
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(conf))) {
      c.readFields(in);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return c;
  }

  /** The store, opened with the shipped configuration. */
  public CheckpointStore open() throws IOException {
    Path root = new Path(uri);
    return new CheckpointStore(root.getFileSystem(configuration()), root, keep);
  }

  @Override
  public String toString() {
    return uri;
  }
}
