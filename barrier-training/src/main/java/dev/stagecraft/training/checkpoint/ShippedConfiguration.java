package dev.stagecraft.training.checkpoint;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import org.apache.hadoop.conf.Configuration;

/**
 * The driver's Hadoop configuration in a form that travels to the executors with a task, so that they reach HDFS or
 * S3 with the same settings and credentials the driver has (Spark ships its own Hadoop configuration to tasks the same
 * way). Never printed: it holds secrets.
 */
public final class ShippedConfiguration implements Serializable {
  private static final long serialVersionUID = 1L;
  private final byte[] bytes;

  private ShippedConfiguration(byte[] bytes) {
    this.bytes = bytes;
  }

  public static ShippedConfiguration of(Configuration conf) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (DataOutputStream data = new DataOutputStream(out)) {
      conf.write(data);
    } catch (IOException e) {
      throw new UncheckedIOException(e); // in memory
    }
    return new ShippedConfiguration(out.toByteArray());
  }

  public Configuration get() {
    Configuration c = new Configuration(false);
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes))) {
      c.readFields(in);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return c;
  }

  @Override
  public String toString() {
    return "ShippedConfiguration[" + bytes.length + " bytes]";
  }
}
