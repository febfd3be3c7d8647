package dev.stagecraft.jobs.cli;

import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ScopeType;

/**
 * The {@code --verbose} flag, mixed into the top command ({@code @Mixin}). Its scope is inherited: every subcommand,
 * at any depth, takes the flag too, before or after its own name ({@code stagecraft --verbose run …} or
 * {@code stagecraft run … --verbose}), and either way it sets this one mixin's field. A subcommand reads it with
 * {@link #of}, from its own {@code @Spec}.
 */
public final class Verbosity {
  /** The flag's name. */
  public static final String OPTION = "--verbose";

  @Option(names = OPTION, scope = ScopeType.INHERIT,
      description = "Show Spark's and Stagecraft's logs, and stack traces of errors.")
  boolean verbose;

  /** Whether {@code --verbose} was given, to {@code command} or to any command above it. */
  public static boolean of(CommandSpec command) {
    OptionSpec option = command.findOption(OPTION);
    return option != null && Boolean.TRUE.equals(option.getValue());
  }
}
