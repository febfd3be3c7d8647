package dev.stagecraft.jobs.cli;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;
import picocli.CommandLine.IVersionProvider;

/** "stagecraft 0.1.0 (Spark 3.5.5, Scala 2.12)", from the build. */
public final class VersionProvider implements IVersionProvider {
  @Override
  public String[] getVersion() {
    Properties p = new Properties();
    try (InputStream in = VersionProvider.class.getResourceAsStream("/dev/stagecraft/jobs/version.properties")) {
      if (in != null) {
        p.load(in);
      }
    } catch (IOException e) {
      // fall through to "unknown"
    }
    return new String[] {
      "stagecraft " + p.getProperty("version", "unknown") + " (built for Spark " + p.getProperty("spark", "?")
          + ", Scala " + p.getProperty("scala", "?") + ")"
    };
  }
}
