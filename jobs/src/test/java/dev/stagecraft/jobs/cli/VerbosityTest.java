package dev.stagecraft.jobs.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.Main;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParseResult;

/** {@code --verbose} reaches a subcommand whether it comes before or after the subcommand's name. */
class VerbosityTest {
  /** The spec of the innermost command {@code args} name, parsed as {@code stagecraft} would. */
  static CommandSpec parsed(String... args) {
    ParseResult result = new CommandLine(new Main()).parseArgs(args);
    while (result.hasSubcommand()) {
      result = result.subcommand();
    }
    return result.commandSpec();
  }

  @Test
  void aSubcommandSeesTheFlagOnEitherSideOfItsName() {
    for (List<String> args : List.of(List.of("--verbose", "run", "wf.yaml"), List.of("run", "wf.yaml", "--verbose"),
        List.of("--verbose", "step", "wf.yaml", "s", "--run-id", "r"), List.of("demo", "--verbose"),
        List.of("bench", "cost", "--verbose"), List.of("--verbose", "airflow", "status", "dag"))) {
      CommandSpec spec = parsed(args.toArray(String[]::new));
      assertThat(Verbosity.of(spec)).as("%s", args).isTrue();
    }
    assertThat(Verbosity.of(parsed("run", "wf.yaml"))).isFalse();
    assertThat(Verbosity.of(parsed("bench", "cost"))).isFalse();
  }

  @Test
  void theCommandsReadItFromTheirOwnSpec() {
    assertThat(Verbosity.of(((Commands.Run) parsed("run", "wf.yaml", "--verbose").userObject()).spec)).isTrue();
    assertThat(Verbosity.of(((Commands.Demo) parsed("--verbose", "demo").userObject()).spec)).isTrue();
  }
}
