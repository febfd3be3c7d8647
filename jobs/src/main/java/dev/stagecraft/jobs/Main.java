package dev.stagecraft.jobs;

import dev.stagecraft.jobs.bench.Bench;
import dev.stagecraft.jobs.cli.AirflowCommands;
import dev.stagecraft.jobs.cli.Commands;
import dev.stagecraft.jobs.cli.Verbosity;
import dev.stagecraft.jobs.cli.VersionProvider;
import dev.stagecraft.jobs.config.Settings;
import dev.stagecraft.jobs.spark.SparkSessions;
import dev.stagecraft.spi.StagecraftException;
import java.io.PrintWriter;
import java.util.Arrays;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Spec;

/**
 * The {@code stagecraft} command: {@code bin/stagecraft} runs it embedded; a cluster runs it with
 * {@code spark-submit --class dev.stagecraft.jobs.Main stagecraft-jobs-*-shaded.jar …} ({@link Settings#MAIN_CLASS}).
 *
 * <p>Exit codes: 0 success; 1 internal error or a failed run; 2 bad input (workflow, flags, data); 3 the cluster lacks
 * resources; 4 an external service failed. On failure stderr gets a one-line reason (the stack trace with
 * {@code --verbose}).
 */
@Command(
    name = "stagecraft",
    mixinStandardHelpOptions = true,
    versionProvider = VersionProvider.class,
    description = "Batch workflows for AI on Apache Spark: prepare data, train, score, and meter what it cost.",
    subcommands = {
      Commands.Run.class,
      Commands.Step.class,
      Commands.Status.class,
      Commands.Cost.class,
      Commands.Demo.class,
      Commands.ExplainGpu.class,
      AirflowCommands.class,
      Bench.class,
      CommandLine.HelpCommand.class
    })
public final class Main implements Runnable {
  /** {@code --verbose}, on this command and every subcommand. */
  @Mixin Verbosity verbosity = new Verbosity();

  @Spec CommandSpec spec;

  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(),
        "Missing command (run, step, status, demo, airflow, bench)");
  }

  public static void main(String[] args) {
    int code = execute(args);
    // A driver that used barrier mode leaves a non-daemon thread behind after spark.stop(): exit explicitly.
    System.exit(code);
  }

  /** Runs the command line and returns its exit code (without exiting). */
  public static int execute(String... args) {
    try {
      // Before anything touches Spark: parsing a workflow's SQL already makes Spark set up logging.
      SparkSessions.configureLogging(Arrays.asList(args).contains(Verbosity.OPTION));
    } catch (NoClassDefFoundError e) {
      // A plain JVM without Spark (e.g. `java -jar … --help`): nothing to configure.
    }
    CommandLine cli = new CommandLine(new Main());
    cli.setExecutionExceptionHandler((e, cmd, parsed) -> {
      boolean verbose = isVerbose(parsed);
      PrintWriter err = cmd.getErr();
      if (verbose) {
        e.printStackTrace(err);
      }
      String message = e instanceof StagecraftException ? e.getMessage() : e.toString();
      err.println("stagecraft: " + message);
      err.flush();
      return StagecraftException.categoryOf(e).exitCode();
    });
    return cli.execute(args);
  }

  private static boolean isVerbose(ParseResult parsed) {
    for (ParseResult p = parsed; p != null; p = p.subcommand()) {
      if (p.hasMatchedOption(Verbosity.OPTION)) {
        return true;
      }
    }
    return false;
  }
}
