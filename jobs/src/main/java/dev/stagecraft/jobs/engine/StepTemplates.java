package dev.stagecraft.jobs.engine;

import dev.stagecraft.jobs.ledger.OutputRecord;
import dev.stagecraft.jobs.ledger.RunLedger;
import dev.stagecraft.jobs.ledger.Workspace;
import dev.stagecraft.jobs.spec.Template;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.StepConfig;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Resolves the {@code ${…}} references ({@link Template}) of a run's steps: the built-ins {@code run_id},
 * {@code workflow_dir} and {@code workspace}, the run's params, and upstream steps' committed outputs.
 */
final class StepTemplates {
  private StepTemplates() {}

  /** The step with every {@code ${…}} replaced: built-ins, params, and upstream steps' committed outputs. */
  static StepConfig resolve(
      WorkflowSpec spec, StepConfig step, RunLedger ledger, Map<String, String> params, Workspace ws, String runId) {
    Map<String, Object> fields = new LinkedHashMap<>();
    step.fields().forEach((k, v) -> fields.put(k, substitute(v, name -> {
      String[] out = Template.stepOutput(name);
      if (out != null) {
        OutputRecord o = ledger.step(out[0]).outputs().get(out[1]);
        if (o == null) {
          throw step.invalid(k, "${" + name + "} has no committed value (step '" + out[0] + "' is "
              + ledger.step(out[0]).status() + ")");
        }
        return o.uri();
      }
      return switch (name) {
        case "run_id" -> runId;
        case "workflow_dir" -> spec.directory();
        case "workspace" -> ws.uri();
        default -> {
          String v2 = params.get(name);
          if (v2 == null) {
            throw step.invalid(k, "unknown parameter ${" + name + "}");
          }
          yield v2;
        }
      };
    })));
    return step.withFields(fields);
  }

  /**
   * The value of reference {@code name} in the workflow's own {@code workspace} field, resolved before there is a
   * workspace or a ledger: {@code run_id}, {@code workflow_dir} or a param ({@code --set} first); any other reference
   * is left as written.
   */
  static String builtInOrParam(WorkflowSpec spec, Engine.Options options, String name) {
    return switch (name) {
      case "run_id" -> options.runId();
      case "workflow_dir" -> spec.directory();
      default -> options.overrides().getOrDefault(name, spec.params().getOrDefault(name, "${" + name + "}"));
    };
  }

  /** {@code value} with the references of every string in it (in lists and maps too) replaced. */
  @SuppressWarnings("unchecked")
  private static Object substitute(Object value, UnaryOperator<String> resolve) {
    if (value instanceof String s) {
      return Template.substitute(s, resolve);
    }
    if (value instanceof List<?> list) {
      List<Object> out = new ArrayList<>();
      list.forEach(v -> out.add(substitute(v, resolve)));
      return out;
    }
    if (value instanceof Map<?, ?> map) {
      Map<Object, Object> out = new LinkedHashMap<>();
      ((Map<Object, Object>) map).forEach((k, v) -> out.put(k, substitute(v, resolve)));
      return out;
    }
    return value;
  }
}
