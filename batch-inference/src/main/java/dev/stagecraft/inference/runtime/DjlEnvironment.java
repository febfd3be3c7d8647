package dev.stagecraft.inference.runtime;

import ai.djl.engine.Engine;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.nio.file.Path;
import java.util.Properties;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Loads DJL's PyTorch engine without ever touching the network.
 *
 * <p>DJL reads each setting below with {@code Utils.getEnvOrSystemProperty} (environment variable first, then the
 * JVM system property of the same name); offline mode is {@code DJL_OFFLINE} or {@code ai.djl.offline}. Before the
 * engine loads, {@link #configure()} sets as system properties the ones that neither the environment nor the JVM
 * already set, so an operator can still override any of them:
 *
 * <ul>
 *   <li>{@value #OFFLINE_PROPERTY} = {@code true}: no model-zoo, repository or telemetry requests;
 *   <li>{@value #CACHE_DIR} and {@value #ENGINE_CACHE_DIR} = {@link #defaultCacheDir()}: where
 *       libtorch is extracted (432 MB, about 8 s the first time), so a JVM reuses an earlier extraction;
 *   <li>{@value #PYTORCH_FLAVOR} and {@value #PYTORCH_VERSION} = the flavor ({@code cpu}, {@code cu128}, …) and
 *       version of the {@code pytorch-native-*} jar on the classpath ({@code cpu} without one): DJL downloads
 *       libtorch when {@value #PYTORCH_VERSION} does not match the jar, so pinning both to the jar keeps DJL on it.
 * </ul>
 *
 * <p>Offline mode alone does not stop DJL from downloading libtorch (its loader does not consult it), so
 * {@link #pytorch()} also refuses to start when no {@code pytorch-native-*} jar is on the classpath and no
 * {@code PYTORCH_LIBRARY_PATH} points at a local libtorch.
 */
public final class DjlEnvironment {
  private static final Logger LOG = LoggerFactory.getLogger(DjlEnvironment.class);

  /** The DJL engine every class of this package uses. */
  public static final String ENGINE_NAME = "PyTorch";

  public static final String OFFLINE_PROPERTY = "ai.djl.offline";
  public static final String OFFLINE_ENV = "DJL_OFFLINE";
  public static final String CACHE_DIR = "DJL_CACHE_DIR";
  public static final String ENGINE_CACHE_DIR = "ENGINE_CACHE_DIR";
  public static final String PYTORCH_FLAVOR = "PYTORCH_FLAVOR";
  public static final String PYTORCH_FLAVOR_DEFAULT = "cpu";
  public static final String PYTORCH_VERSION = "PYTORCH_VERSION";
  public static final String PYTORCH_LIBRARY_PATH = "PYTORCH_LIBRARY_PATH";
  /** The environment variable that moves the Stagecraft cache (the scripts in {@code bin/} read it too). */
  public static final String STAGECRAFT_CACHE_ENV = "STAGECRAFT_CACHE";

  /** What DJL's platform detection reads from a {@code pytorch-native-*} jar. */
  static final String NATIVE_PROPERTIES = "native/lib/pytorch.properties";

  private static volatile Engine engine;

  private DjlEnvironment() {}

  /**
   * The default of {@value #CACHE_DIR} and {@value #ENGINE_CACHE_DIR}: {@code djl} in the Stagecraft cache, which is
   * {@code $STAGECRAFT_CACHE} if set (as for the scripts in {@code bin/}), else {@code ${user.home}/.cache/stagecraft}.
   */
  public static Path defaultCacheDir() {
    return stagecraftCache(System.getenv(STAGECRAFT_CACHE_ENV)).resolve("djl");
  }

  static Path stagecraftCache(String env) {
    return env != null && !env.isBlank()
        ? Path.of(env)
        : Path.of(System.getProperty("user.home"), ".cache", "stagecraft");
  }

  /**
   * Sets DJL's offline and cache settings as system properties where neither an environment variable nor a system
   * property sets them already. Idempotent; takes effect only if called before DJL's engine loads.
   */
  public static synchronized void configure() {
    if (System.getenv(OFFLINE_ENV) == null) {
      setIfAbsent(OFFLINE_PROPERTY, "true");
    }
    String cacheDir = defaultCacheDir().toString();
    setIfAbsent(CACHE_DIR, cacheDir);
    setIfAbsent(ENGINE_CACHE_DIR, cacheDir);
    Properties bundled = bundledNativeProperties();
    String flavor = bundled.getProperty("flavor");
    setIfAbsent(PYTORCH_FLAVOR, flavor != null ? flavor : PYTORCH_FLAVOR_DEFAULT);
    String version = bundledPyTorchVersion();
    if (version != null) {
      setIfAbsent(PYTORCH_VERSION, version);
    }
  }

  /**
   * The PyTorch engine, configured by {@link #configure()} and loaded on first use.
   *
   * @throws StagecraftException if no native PyTorch library can be found locally, or the engine fails to load
   */
  public static Engine pytorch() {
    Engine e = engine;
    if (e == null) {
      synchronized (DjlEnvironment.class) {
        e = engine;
        if (e == null) {
          configure();
          requireLocalNatives();
          long start = System.nanoTime();
          try {
            e = Engine.getEngine(ENGINE_NAME);
          } catch (RuntimeException | UnsatisfiedLinkError ex) {
            throw new StagecraftException(
                ErrorCategory.INTERNAL, "Cannot load the DJL PyTorch engine: " + ex.getMessage(), ex);
          }
          LOG.info(
              "DJL {} engine {} loaded in {} ms (cache {})",
              ENGINE_NAME,
              e.getVersion(),
              (System.nanoTime() - start) / 1_000_000,
              setting(ENGINE_CACHE_DIR));
          engine = e;
        }
      }
    }
    return e;
  }

  /** DJL's view of a setting: the environment variable if set, else the system property. */
  static String setting(String name) {
    String env = System.getenv(name);
    return env != null ? env : System.getProperty(name);
  }

  private static void setIfAbsent(String name, String value) {
    if (setting(name) == null) {
      System.setProperty(name, value);
    }
  }

  private static void requireLocalNatives() {
    if (setting(PYTORCH_LIBRARY_PATH) != null) {
      return;
    }
    if (DjlEnvironment.class.getClassLoader().getResource(NATIVE_PROPERTIES) == null) {
      throw new StagecraftException(
          ErrorCategory.INTERNAL,
          "Cannot load the DJL PyTorch engine offline: no pytorch-native jar ("
              + NATIVE_PROPERTIES
              + ") on the classpath and "
              + PYTORCH_LIBRARY_PATH
              + " is not set, so DJL would try to download libtorch");
    }
  }

  /** "2.7.1" from the native jar's {@code version=2.7.1-20250812}, or null without a native jar. */
  static String bundledPyTorchVersion() {
    String version = bundledNativeProperties().getProperty("version");
    if (version == null) {
      return null;
    }
    int dash = version.indexOf('-');
    return dash < 0 ? version : version.substring(0, dash);
  }

  /** The native jar's {@value #NATIVE_PROPERTIES} (version, flavor, classifier), empty without one. */
  static Properties bundledNativeProperties() {
    Properties props = new Properties();
    URL url = DjlEnvironment.class.getClassLoader().getResource(NATIVE_PROPERTIES);
    if (url != null) {
      try (InputStream in = url.openStream()) {
        props.load(in);
      } catch (IOException e) {
        LOG.warn("Cannot read {}: {}", url, e.toString());
      }
    }
    return props;
  }
}
