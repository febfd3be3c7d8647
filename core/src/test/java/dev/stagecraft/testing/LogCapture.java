package dev.stagecraft.testing;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.Logger;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.appender.AbstractAppender;
import org.apache.logging.log4j.core.config.Configuration;
import org.apache.logging.log4j.core.config.LoggerConfig;
import org.apache.logging.log4j.core.config.Property;

/**
 * Captures what a class logs, as "LEVEL message" lines. Stagecraft logs through slf4j; the test JVM's backend is
 * Log4j 2 (bin/log4j2-test.properties), so this hooks an appender onto the class's Log4j logger.
 */
public final class LogCapture implements AutoCloseable {
  private final List<String> lines = new CopyOnWriteArrayList<>();
  private final AbstractAppender appender;
  private final Runnable detach;

  public LogCapture(Class<?> source) {
    Logger logger = (Logger) LogManager.getLogger(source);
    this.appender = appender("capture-" + source.getSimpleName(), false);
    logger.addAppender(appender);
    this.detach = () -> logger.removeAppender(appender);
  }

  private LogCapture(Level level, String... loggerNames) {
    LoggerContext context = (LoggerContext) LogManager.getContext(false);
    Configuration config = context.getConfiguration();
    this.appender = appender("capture-all", true);
    Map<String, Level> previous = new LinkedHashMap<>(); // null: the logger had no configuration of its own
    for (String name : loggerNames) {
      LoggerConfig own = config.getLoggers().get(name);
      if (own == null) {
        // Not additive: the capture's DEBUG flood stays out of the console (the test's output file).
        own = new LoggerConfig(name, level, false);
        config.addLogger(name, own);
        previous.put(name, null);
      } else {
        previous.put(name, own.getLevel());
        own.setLevel(level);
      }
      own.addAppender(appender, null, null);
    }
    context.updateLoggers();
    this.detach = () -> {
      previous.forEach((name, old) -> {
        if (old == null) {
          config.removeLogger(name);
        } else {
          LoggerConfig own = config.getLoggers().get(name);
          own.removeAppender(appender.getName());
          own.setLevel(old);
        }
      });
      context.updateLoggers();
    };
  }

  /**
   * Captures everything logged under the given logger names (prefixes such as {@code org.apache.hadoop}) down to
   * {@code level}, which they are set to until {@link #close()}; loggers without a configuration of their own log
   * only here meanwhile. Lines are "LEVEL logger: message", followed by the stack trace of any exception logged
   * with it.
   */
  public static LogCapture everything(Level level, String... loggerNames) {
    return new LogCapture(level, loggerNames);
  }

  public List<String> lines() {
    return List.copyOf(lines);
  }

  @Override
  public void close() {
    detach.run();
    appender.stop();
  }

  private AbstractAppender appender(String name, boolean detailed) {
    AbstractAppender a = new AbstractAppender(name, null, null, true, Property.EMPTY_ARRAY) {
      @Override
      public void append(LogEvent event) {
        String message = event.getMessage().getFormattedMessage();
        if (!detailed) {
          lines.add(event.getLevel() + " " + message);
          return;
        }
        StringBuilder line = new StringBuilder().append(event.getLevel()).append(' ')
            .append(event.getLoggerName()).append(": ").append(message);
        if (event.getThrown() != null) {
          StringWriter trace = new StringWriter();
          event.getThrown().printStackTrace(new PrintWriter(trace));
          line.append('\n').append(trace);
        }
        lines.add(line.toString());
      }
    };
    a.start();
    return a;
  }
}
