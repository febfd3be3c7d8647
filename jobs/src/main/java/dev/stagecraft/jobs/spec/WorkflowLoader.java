package dev.stagecraft.jobs.spec;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.stagecraft.policies.Policies;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.sizing.Deadline;
import dev.stagecraft.policies.sizing.Schedule;
import dev.stagecraft.spi.ErrorCategory;
import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepKind;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;

/**
 * Reads a workflow YAML file and validates all of it before anything runs.
 *
 * <p>Every problem found is reported, one per line, each naming the file, the step id and the field and saying what
 * was expected. Checks: top-level fields; step ids (present, well-formed, unique); kinds (known); fields (required
 * present, no unknown names, types); the kind's own checks; references in {@code after} and in {@code ${…}} (known
 * steps, outputs and parameters); and the dependency graph (no cycle).
 */
public final class WorkflowLoader {
  /** Parameters every workflow has; {@code params} may not redefine them. */
  public static final Set<String> BUILT_INS = Set.of("run_id", "workflow_dir", "workspace");

  static final List<String> TOP_LEVEL =
      List.of("name", "workspace", "params", "policies", "deadline", "budget", "sizing", "steps");
  static final List<String> COMMON = List.of("id", "kind", "after", "policy", "deadline", "budget", "sizing");
  private static final Pattern ID = Pattern.compile("[A-Za-z][A-Za-z0-9_]*");

  private final StepKinds kinds;
  private final ObjectMapper yaml;

  public WorkflowLoader(StepKinds kinds) {
    this.kinds = kinds;
    this.yaml = new ObjectMapper(new YAMLFactory());
    this.yaml.enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);
  }

  /** Reads and validates the workflow file at {@code file}. */
  public WorkflowSpec load(Path file) {
    String text;
    try {
      text = Files.readString(file, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw StagecraftException.user("Cannot read workflow %s: no such file", file);
    } catch (IOException e) {
      throw StagecraftException.user("Cannot read workflow %s: %s", file, e.getMessage());
    }
    Path dir = file.toAbsolutePath().normalize().getParent();
    return parse(file.toString(), text, dir.toUri().toString().replaceAll("/$", ""));
  }

  /**
   * Validates a workflow given as text.
   *
   * @param source the file name used in messages
   * @param directory URI of the folder relative paths are resolved against
   */
  public WorkflowSpec parse(String source, String text, String directory) {
    JsonNode root;
    try {
      root = yaml.readTree(text);
    } catch (JsonProcessingException e) {
      throw StagecraftException.user("%s: not valid YAML: %s", source,
          StagecraftException.firstLine(e.getOriginalMessage()));
    }
    if (root == null || !root.isObject()) {
      throw StagecraftException.user("%s: expected a YAML map with 'name' and 'steps'", source);
    }
    Problems problems = new Problems(source);

    for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
      String f = it.next();
      if (!TOP_LEVEL.contains(f)) {
        problems.add("field '" + f + "': unknown field (expected one of: " + String.join(", ", TOP_LEVEL) + ")");
      }
    }
    String name = scalar(root, "name", problems, "the workflow's name");
    Optional<String> workspace = Optional.ofNullable(root.get("workspace")).map(JsonNode::asText);
    Map<String, String> params = params(root.get("params"), problems);
    Map<String, ResourcePolicy> policies = policies(source, root.get("policies"), directory, problems);
    Schedule schedule = schedule(root, "", problems);
    Map<String, Schedule> stepSchedules = new LinkedHashMap<>();

    List<StepConfig> steps = new ArrayList<>();
    JsonNode stepsNode = root.get("steps");
    if (stepsNode == null || stepsNode.isNull()) {
      problems.add("field 'steps': is missing (expected a list of steps)");
    } else if (!stepsNode.isArray() || stepsNode.isEmpty()) {
      problems.add("field 'steps': expected a non-empty list of steps");
    } else {
      Set<String> seen = new LinkedHashSet<>();
      int index = 0;
      for (JsonNode s : stepsNode) {
        index++;
        StepConfig step = step(source, s, index, seen, problems);
        if (step != null) {
          steps.add(step);
          stepSchedules.put(step.id(), schedule(s, "step '" + step.id() + "' ", problems));
        }
      }
    }
    workspace.ifPresent(w -> checkReferences("", "workspace", w, params.keySet(), Map.of(), problems));
    for (StepConfig s : steps) {
      checkPolicy(s, policies, problems);
    }

    Map<String, Set<String>> upstream = new LinkedHashMap<>();
    if (problems.isEmpty()) {
      Map<String, StepConfig> byId = new LinkedHashMap<>();
      steps.forEach(s -> byId.put(s.id(), s));
      for (StepConfig s : steps) {
        upstream.put(s.id(), dependencies(s, byId, params.keySet(), problems));
      }
      if (problems.isEmpty()) {
        findCycle(steps, upstream).ifPresent(c -> problems.add("dependency cycle: " + String.join(" -> ", c)));
      }
    }
    problems.throwIfAny();
    return new WorkflowSpec(source, directory, name, workspace, params, policies, steps, upstream, schedule,
        stepSchedules);
  }

  /** {@code deadline}, {@code budget} and {@code sizing} of the workflow ({@code at} empty) or of a step. */
  private static Schedule schedule(JsonNode node, String at, Problems problems) {
    Optional<Deadline> deadline = Optional.empty();
    JsonNode d = node.get("deadline");
    if (d != null && !d.isNull()) {
      deadline = d.isValueNode() ? Deadline.parse(d.asText()) : Optional.empty();
      if (deadline.isEmpty()) {
        problems.add(at + "field 'deadline': '" + d.asText() + "' is not a deadline (expected " + Deadline.EXPECTED
            + ")");
      }
    }
    Optional<Double> budget = Optional.empty();
    JsonNode b = node.get("budget");
    if (b != null && !b.isNull()) {
      double v = b.isNumber() ? b.asDouble() : b.isTextual() && isNumber(b.asText()) ? Double.parseDouble(b.asText())
          : Double.NaN;
      if (!(v > 0) || Double.isInfinite(v)) {
        problems.add(at + "field 'budget': '" + b.asText() + "' is not a positive amount (expected the most it may "
            + "cost in the price catalog's currency, e.g. 0.50)");
      } else {
        budget = Optional.of(v);
      }
    }
    Optional<Schedule.Sizing> sizing = Optional.empty();
    JsonNode z = node.get("sizing");
    if (z != null && !z.isNull()) {
      sizing = z.isValueNode() ? Schedule.Sizing.parse(z.asText()) : Optional.empty();
      if (sizing.isEmpty()) {
        problems.add(at + "field 'sizing': '" + z.asText() + "' is not a sizing mode (expected auto or as_written)");
      }
    }
    return new Schedule(deadline, budget, sizing);
  }

  private StepConfig step(String source, JsonNode s, int index, Set<String> seen, Problems problems) {
    if (!s.isObject()) {
      problems.add("step #" + index + ": expected a map with 'id' and 'kind'");
      return null;
    }
    JsonNode idNode = s.get("id");
    if (idNode == null || idNode.isNull() || idNode.asText().isBlank()) {
      problems.add("step #" + index + " field 'id': is missing (expected a unique step id)");
      return null;
    }
    String id = idNode.asText();
    String at = "step '" + id + "'";
    boolean ok = true;
    if (!ID.matcher(id).matches()) {
      problems.add(at + " field 'id': invalid id (expected letters, digits and '_', starting with a letter)");
      ok = false;
    }
    if (!seen.add(id)) {
      problems.add(at + " field 'id': duplicate id (expected each step id once)");
      ok = false;
    }
    JsonNode kindNode = s.get("kind");
    if (kindNode == null || kindNode.isNull()) {
      problems.add(at + " field 'kind': is missing (expected one of: " + String.join(", ", kinds.names()) + ")");
      return null;
    }
    Optional<StepKind> kind = kinds.find(kindNode.asText());
    if (kind.isEmpty()) {
      problems.add(
          at + " field 'kind': unknown kind '" + kindNode.asText() + "' (expected one of: "
              + String.join(", ", kinds.names()) + ")");
      return null;
    }
    Map<String, FieldSpec> specs = new LinkedHashMap<>();
    kind.get().fields().forEach(f -> specs.put(f.name(), f));
    Map<String, Object> fields = new LinkedHashMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = s.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      String f = e.getKey();
      if (COMMON.contains(f)) {
        continue;
      }
      FieldSpec spec = specs.get(f);
      if (spec == null) {
        List<String> known = new ArrayList<>(COMMON);
        known.addAll(specs.keySet());
        problems.add(
            at + " field '" + f + "': unknown field for kind '" + kind.get().name() + "' (expected one of: "
                + String.join(", ", known) + ")");
        ok = false;
        continue;
      }
      String typeProblem = typeProblem(spec, e.getValue());
      if (typeProblem != null) {
        problems.add(at + " field '" + f + "': " + typeProblem + " (expected " + spec.expected() + ")");
        ok = false;
        continue;
      }
      fields.put(f, yaml.convertValue(e.getValue(), Object.class));
    }
    for (FieldSpec spec : specs.values()) {
      if (spec.required() && (!s.has(spec.name()) || s.get(spec.name()).isNull())) {
        problems.add(at + " field '" + spec.name() + "': is missing (expected " + spec.expected() + ")");
        ok = false;
      }
    }
    List<String> after = new ArrayList<>();
    JsonNode afterNode = s.get("after");
    if (afterNode != null && !afterNode.isNull()) {
      if (afterNode.isArray()) {
        afterNode.forEach(n -> after.add(n.asText()));
      } else if (afterNode.isValueNode()) {
        after.add(afterNode.asText());
      } else {
        problems.add(at + " field 'after': is a map (expected a list of step ids)");
        ok = false;
      }
    }
    Optional<String> policy = Optional.ofNullable(s.get("policy")).filter(n -> !n.isNull()).map(JsonNode::asText);
    if (!ok) {
      return null;
    }
    StepConfig step = new StepConfig(source, id, kind.get().name(), after, policy, fields);
    try {
      kind.get().validate(step);
    } catch (StagecraftException e) {
      problems.addRaw(e.getMessage());
      return null;
    }
    return step;
  }

  /**
   * The built-in policies plus the workflow's: an inline map, or the path of a YAML file (relative to the workflow's
   * folder) holding the map, optionally under a top-level {@code policies:} key.
   */
  private Map<String, ResourcePolicy> policies(String source, JsonNode node, String directory, Problems problems) {
    if (node == null || node.isNull()) {
      return Policies.BUILT_IN;
    }
    String from = source;
    Object value;
    if (node.isTextual()) {
      String file = node.asText();
      java.net.URI uri = file.contains(":") ? java.net.URI.create(file)
          : java.net.URI.create(directory + "/").resolve(file);
      from = file;
      try {
        JsonNode root = yaml.readTree(Files.readString(Path.of(uri), StandardCharsets.UTF_8));
        if (root != null && root.isObject() && root.size() == 1 && root.has("policies")) {
          root = root.get("policies");
        }
        value = root == null || root.isNull() ? Map.of() : yaml.convertValue(root, Object.class);
      } catch (NoSuchFileException e) {
        problems.add("field 'policies': cannot read policy file " + file + ": no such file (expected a YAML map of "
            + "policy name to policy, relative to the workflow's folder)");
        return Policies.BUILT_IN;
      } catch (IOException | IllegalArgumentException | java.nio.file.FileSystemNotFoundException e) {
        problems.add("field 'policies': cannot read policy file " + file + ": "
            + StagecraftException.firstLine(e.getMessage()));
        return Policies.BUILT_IN;
      }
    } else {
      value = yaml.convertValue(node, Object.class);
    }
    Policies.Parsed parsed = Policies.parse(from, value);
    parsed.problems().forEach(problems::addRaw);
    return parsed.policies();
  }

  /** The step's policy exists, and a barrier step's policy has static executors. */
  private void checkPolicy(StepConfig step, Map<String, ResourcePolicy> policies, Problems problems) {
    if (step.policy().isEmpty()) {
      return;
    }
    String name = step.policy().get();
    ResourcePolicy policy = policies.get(name);
    String at = "step '" + step.id() + "' field 'policy'";
    if (policy == null) {
      problems.add(at + ": unknown policy '" + name + "' (expected one of: " + Policies.names(policies) + ")");
    } else if (kinds.get(step.kind()).barrier() && policy.allocation().dynamic()) {
      problems.add(at + ": policy '" + name + "' uses dynamic allocation, which Spark refuses for the barrier stages "
          + "of a '" + step.kind() + "' step (SPARK-24942) (expected a policy with allocation mode static, e.g. "
          + "gpu-training)");
    }
  }

  private Set<String> dependencies(
      StepConfig step, Map<String, StepConfig> byId, Set<String> params, Problems problems) {
    Set<String> deps = new LinkedHashSet<>();
    String at = "step '" + step.id() + "'";
    for (String a : step.after()) {
      if (!byId.containsKey(a)) {
        problems.add(at + " field 'after': unknown step '" + a + "' (expected one of: " + others(byId, step) + ")");
      } else if (a.equals(step.id())) {
        problems.add(at + " field 'after': a step cannot run after itself");
      } else {
        deps.add(a);
      }
    }
    for (Map.Entry<String, Object> f : step.fields().entrySet()) {
      forEachString(f.getValue(), text -> deps.addAll(checkReferences(at, f.getKey(), text, params, byId, problems)));
    }
    StepKind kind = kinds.get(step.kind());
    for (FieldSpec f : kind.fields()) {
      String value = f.type() == FieldSpec.Type.INPUT ? step.string(f.name()).orElse("") : "";
      if (byId.containsKey(value) && !value.equals(step.id())) {
        deps.add(value);
      }
    }
    for (String implicit : kind.implicitInputs(step, byId.keySet())) {
      if (!implicit.equals(step.id())) {
        deps.add(implicit);
      }
    }
    return deps;
  }

  /** Checks the {@code ${…}} references of one string; returns the steps it references. */
  private Set<String> checkReferences(
      String at, String field, String text, Set<String> params, Map<String, StepConfig> steps, Problems problems) {
    Set<String> referenced = new LinkedHashSet<>();
    String where = (at.isEmpty() ? "" : at + " ") + "field '" + field + "'";
    for (String ref : Template.references(text)) {
      String[] out = Template.stepOutput(ref);
      if (out != null) {
        StepConfig target = steps.get(out[0]);
        if (target == null) {
          problems.add(
              where + ": reference ${" + ref + "} names unknown step '" + out[0] + "' (expected one of: "
                  + String.join(", ", steps.keySet()) + ")");
          continue;
        }
        List<String> outputs = kinds.get(target.kind()).outputs();
        if (!outputs.contains(out[1])) {
          problems.add(
              where + ": reference ${" + ref + "} names unknown output '" + out[1] + "' of step '" + out[0]
                  + "' (expected one of: " + String.join(", ", outputs) + ")");
          continue;
        }
        referenced.add(out[0]);
      } else if (!params.contains(ref) && !BUILT_INS.contains(ref)) {
        Set<String> known = new TreeSet<>(params);
        known.addAll(BUILT_INS);
        problems.add(
            where + ": unknown parameter ${" + ref + "} (expected one of: " + String.join(", ", known)
                + ", or ${steps.ID.OUTPUT})");
      }
    }
    return referenced;
  }

  private static Map<String, String> params(JsonNode node, Problems problems) {
    Map<String, String> params = new LinkedHashMap<>();
    if (node == null || node.isNull()) {
      return params;
    }
    if (!node.isObject()) {
      problems.add("field 'params': expected a map of name: value");
      return params;
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (BUILT_INS.contains(e.getKey())) {
        problems.add("field 'params." + e.getKey() + "': '" + e.getKey() + "' is built in (expected another name)");
      } else if (!e.getValue().isValueNode()) {
        problems.add("field 'params." + e.getKey() + "': expected a single value, not a list or map");
      } else if (!Template.references(e.getValue().asText()).isEmpty()) {
        problems.add("field 'params." + e.getKey() + "': parameters cannot reference ${…} (expected a plain value)");
      } else {
        params.put(e.getKey(), e.getValue().isNull() ? "" : e.getValue().asText());
      }
    }
    return params;
  }

  private static String scalar(JsonNode root, String field, Problems problems, String expected) {
    JsonNode n = root.get(field);
    if (n == null || n.isNull() || (n.isValueNode() && n.asText().isBlank())) {
      problems.add("field '" + field + "': is missing (expected " + expected + ")");
      return "";
    }
    if (!n.isValueNode()) {
      problems.add("field '" + field + "': expected " + expected + ", not a list or map");
      return "";
    }
    return n.asText();
  }

  private static String typeProblem(FieldSpec spec, JsonNode v) {
    if (v.isNull() || (v.isTextual() && v.asText().contains("${"))) {
      return null; // checked again with the substituted value when the step runs
    }
    return switch (spec.type()) {
      case STRING, INPUT -> v.isValueNode() ? null : "is a " + shape(v);
      case STRING_LIST -> v.isValueNode() || (v.isArray() && allScalars(v)) ? null : "is a " + shape(v);
      case MAP -> v.isObject() ? null : "is a " + shape(v);
      case INTEGER -> v.isIntegralNumber() || (v.isTextual() && v.asText().trim().matches("-?\\d+"))
          ? null : "'" + v.asText() + "' is not an integer";
      case NUMBER -> v.isNumber() || (v.isTextual() && isNumber(v.asText()))
          ? null : "'" + v.asText() + "' is not a number";
      case BOOLEAN -> v.isBoolean() || (v.isTextual() && v.asText().matches("(?i)true|false"))
          ? null : "'" + v.asText() + "' is not true or false";
      case ANY -> null;
    };
  }

  private static boolean allScalars(JsonNode array) {
    for (JsonNode n : array) {
      if (!n.isValueNode()) {
        return false;
      }
    }
    return true;
  }

  private static boolean isNumber(String s) {
    try {
      Double.parseDouble(s.trim());
      return true;
    } catch (NumberFormatException e) {
      return false;
    }
  }

  private static String shape(JsonNode v) {
    return v.isObject() ? "map" : v.isArray() ? "list" : "value";
  }

  private static String others(Map<String, StepConfig> byId, StepConfig step) {
    List<String> ids = new ArrayList<>(byId.keySet());
    ids.remove(step.id());
    return String.join(", ", ids);
  }

  @SuppressWarnings("unchecked")
  static void forEachString(Object value, java.util.function.Consumer<String> action) {
    if (value instanceof String s) {
      action.accept(s);
    } else if (value instanceof List<?> list) {
      list.forEach(v -> forEachString(v, action));
    } else if (value instanceof Map<?, ?> map) {
      ((Map<Object, Object>) map).values().forEach(v -> forEachString(v, action));
    }
  }

  /** A cycle as a path that returns to its start, e.g. [a, b, c, a]. */
  static Optional<List<String>> findCycle(List<StepConfig> steps, Map<String, Set<String>> upstream) {
    Map<String, Integer> state = new HashMap<>(); // 1 = on the path, 2 = done
    List<String> path = new ArrayList<>();
    for (StepConfig s : steps) {
      Optional<List<String>> c = visit(s.id(), upstream, state, path);
      if (c.isPresent()) {
        return c;
      }
    }
    return Optional.empty();
  }

  private static Optional<List<String>> visit(
      String id, Map<String, Set<String>> upstream, Map<String, Integer> state, List<String> path) {
    Integer st = state.get(id);
    if (st != null && st == 2) {
      return Optional.empty();
    }
    if (st != null && st == 1) {
      // The path runs downstream-to-upstream; print the cycle in run order (upstream first).
      List<String> cycle = new ArrayList<>(path.subList(path.indexOf(id), path.size()));
      cycle.add(id);
      java.util.Collections.reverse(cycle);
      return Optional.of(cycle);
    }
    state.put(id, 1);
    path.add(id);
    for (String up : upstream.getOrDefault(id, Set.of())) {
      Optional<List<String>> c = visit(up, upstream, state, path);
      if (c.isPresent()) {
        return c;
      }
    }
    path.remove(path.size() - 1);
    state.put(id, 2);
    return Optional.empty();
  }

  /** Collected problems; thrown together as one user error, one problem per line. */
  private static final class Problems {
    private final String source;
    private final List<String> lines = new ArrayList<>();

    Problems(String source) {
      this.source = source;
    }

    void add(String problem) {
      lines.add(source + ": " + problem);
    }

    void addRaw(String message) {
      lines.add(message);
    }

    boolean isEmpty() {
      return lines.isEmpty();
    }

    void throwIfAny() {
      if (!lines.isEmpty()) {
        throw new WorkflowException(lines);
      }
    }
  }

  /** A workflow that failed validation; {@link #problems()} lists each problem. */
  public static final class WorkflowException extends StagecraftException {
    private static final long serialVersionUID = 1L;
    private final List<String> problems;

    WorkflowException(List<String> problems) {
      super(ErrorCategory.USER, String.join("\n", problems));
      this.problems = List.copyOf(problems);
    }

    public List<String> problems() {
      return problems;
    }
  }
}
