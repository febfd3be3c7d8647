package dev.stagecraft.inference.spark;

import static java.util.Objects.requireNonNull;

import ai.djl.Device;
import dev.stagecraft.inference.bundle.ModelBundle;
import dev.stagecraft.inference.bundle.NetworkShape;
import dev.stagecraft.inference.bundle.ParameterFile;
import dev.stagecraft.inference.cache.ModelCache;
import dev.stagecraft.inference.model.BundleNetwork;
import dev.stagecraft.inference.score.OnnxScorer;
import dev.stagecraft.inference.score.Scorer;
import dev.stagecraft.spi.StagecraftException;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.Serializable;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * How an executor loads the model of an {@code infer} step: a Stagecraft bundle (DJL) or an ONNX file, at a version
 * fixed by the driver (the bundle's weights checksum, the ONNX file's SHA-256), so every task scores with the same
 * model and the per-executor cache tells versions apart.
 */
record ModelRef(Kind kind, String uri, String version, NetworkShape shape, int declaredFeatures, HadoopConf conf)
    implements Serializable {

  enum Kind {
    BUNDLE,
    ONNX
  }

  ModelRef {
    requireNonNull(kind, "kind is null");
    requireNonNull(uri, "uri is null");
    requireNonNull(version, "version is null");
    requireNonNull(conf, "conf is null");
  }

  ModelCache.Key key(String device) {
    return new ModelCache.Key(uri, version, device);
  }

  /** Loads the model on {@code device} (ONNX: always the CPU provider) with {@code threads} intra-op threads. */
  Scorer load(Device device, int threads) throws IOException {
    Path path = new Path(uri);
    FileSystem fs = path.getFileSystem(conf.get());
    if (kind == Kind.BUNDLE) {
      ModelBundle bundle = ModelBundle.open(fs, path);
      byte[] weights = bundle.file(ModelBundle.WEIGHTS);
      String sha = sha256(weights);
      if (!sha.equals(version)) {
        throw StagecraftException.user("Cannot load model bundle %s: its weights changed while the step ran "
            + "(SHA-256 %s, expected %s)", uri, sha, version);
      }
      float[] params = ParameterFile.read(new ByteArrayInputStream(weights));
      try {
        return new BundleNetwork(shape, params, device);
      } catch (IllegalArgumentException e) {
        throw StagecraftException.user("Invalid model bundle %s: %s", uri, e.getMessage());
      }
    }
    byte[] bytes = readAll(fs, path);
    String sha = sha256(bytes);
    if (!sha.equals(version)) {
      throw StagecraftException.user("Cannot load ONNX model %s: the file changed while the step ran (SHA-256 %s, "
          + "expected %s)", uri, sha, version);
    }
    return new OnnxScorer(uri, bytes, declaredFeatures, threads);
  }

  static byte[] readAll(FileSystem fs, Path path) throws IOException {
    try (InputStream in = fs.open(path)) {
      return in.readAllBytes();
    }
  }

  static String sha256(byte[] bytes) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  static HadoopConf conf(Configuration c) {
    return new HadoopConf(new Configuration(c));
  }
}
