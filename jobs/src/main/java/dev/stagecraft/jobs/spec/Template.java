package dev.stagecraft.jobs.spec;

import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code ${name}} references of a workflow's strings. {@code $${} writes a literal {@code ${}.
 *
 * <p>A name is a parameter ({@code ${input}}), a built-in ({@code ${run_id}}, {@code ${workflow_dir}},
 * {@code ${workspace}}) or an earlier step's output ({@code ${steps.ID.OUTPUT}}).
 */
public final class Template {
  private static final Pattern REF = Pattern.compile("\\$(\\$?)\\{([^}]*)}");
  /** Prefix of references to step outputs. */
  public static final String STEPS = "steps.";

  private Template() {}

  /** The names referenced in {@code text}, in order (escaped {@code $${…}} excluded). */
  public static List<String> references(String text) {
    List<String> out = new ArrayList<>();
    Matcher m = REF.matcher(text);
    while (m.find()) {
      if (m.group(1).isEmpty()) {
        out.add(m.group(2).trim());
      }
    }
    return out;
  }

  /** Replaces every reference by {@code resolve(name)}; {@code $${x}} becomes {@code ${x}}. */
  public static String substitute(String text, UnaryOperator<String> resolve) {
    Matcher m = REF.matcher(text);
    StringBuilder out = new StringBuilder();
    while (m.find()) {
      String replacement = m.group(1).isEmpty() ? resolve.apply(m.group(2).trim()) : "${" + m.group(2) + "}";
      m.appendReplacement(out, Matcher.quoteReplacement(replacement));
    }
    m.appendTail(out);
    return out.toString();
  }

  /** A reference to a step output, split: {@code steps.train.model} → [train, model]; null if not one. */
  public static String[] stepOutput(String name) {
    if (!name.startsWith(STEPS)) {
      return null;
    }
    String[] parts = name.substring(STEPS.length()).split("\\.", -1);
    return parts.length == 2 ? parts : new String[] {name.substring(STEPS.length()), ""};
  }
}
