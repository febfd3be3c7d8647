package dev.stagecraft.jobs.cli;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;
import picocli.CommandLine.IVersionProvider;

/** "stagecraft 0.1.0 (Spark 3.5.5, Scala 2.12)", from the build. */
public final class VersionProvider implements IVersionProvider {
  private static final Properties BUILD = load();

  @Override
  public String[] getVersion() {
    return new String[] {
      "stagecraft " + BUILD.getProperty("version", "unknown") + " (built for Spark " + BUILD.getProperty("spark", "?")
          + ", Scala " + BUILD.getProperty("scala", "?") + ")"
    };
  }

  /** What the build recorded: "version" (Stagecraft's), "spark" (3.5.5, 4.2.0) or "scala" (2.12, 2.13). */
  public static String build(String name) {
    String value = BUILD.getProperty(name);
    if (value == null) {
      throw new IllegalStateException("The jar lacks dev/stagecraft/jobs/version.properties (" + name + ")");
    }
    return value;
  }

  private static Properties load() {
    Properties p = new Properties();
    try (InputStream in = VersionProvider.class.getResourceAsStream("/dev/stagecraft/jobs/version.properties")) {
      if (in != null) {
        p.load(in);
      }
    } catch (IOException e) {
      // fall through to "unknown"
    }
    return p;
  }
}
