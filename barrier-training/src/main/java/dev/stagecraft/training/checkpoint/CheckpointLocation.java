package dev.stagecraft.training.checkpoint;

import java.io.IOException;
import java.io.Serializable;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * Where a step's checkpoints live, in a form that travels to the executors with the task: the folder's URI and the
 * driver's Hadoop configuration ({@link ShippedConfiguration}). {@link #toString()} shows the URI only.
 */
public final class CheckpointLocation implements Serializable {
  private static final long serialVersionUID = 1L;
  private final String uri;
  private final int keep;
  private final ShippedConfiguration conf;

  public CheckpointLocation(String uri, int keep, Configuration conf) {
    this.uri = uri;
    this.keep = keep;
    this.conf = ShippedConfiguration.of(conf);
  }

  public String uri() {
    return uri;
  }

  public Configuration configuration() {
    return conf.get();
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
