package dev.stagecraft.jobs.notebook;

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import dev.stagecraft.jobs.spec.WorkflowLoader;
import dev.stagecraft.jobs.spec.WorkflowSpec;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;

/**
 * A validated workflow, as the CLI would run it: loaded from a YAML file ({@link Session#load}), given as YAML text
 * ({@link Session#parse}) or built in code ({@link Session#workflow}). Immutable: {@link #set} and
 * {@link #withPolicies} return changed copies, validated again.
 */
public final class Workflow {
  static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory()
      .disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER)
      .enable(YAMLGenerator.Feature.MINIMIZE_QUOTES));

  private final WorkflowLoader loader;
  private final WorkflowSpec spec;
  private final String text;
  private final Optional<Path> file;
  private final Map<String, String> overrides;

  Workflow(WorkflowLoader loader, WorkflowSpec spec, String text, Optional<Path> file, Map<String, String> overrides) {
    this.loader = requireNonNull(loader, "loader is null");
    this.spec = requireNonNull(spec, "spec is null");
    this.text = requireNonNull(text, "text is null");
    this.file = requireNonNull(file, "file is null");
    this.overrides = Map.copyOf(overrides);
  }

  public String name() {
    return spec.name();
  }

  /** The step ids in the order they would run one at a time. */
  public List<String> steps() {
    return spec.order();
  }

  public StepConfig step(String id) {
    return spec.findStep(id).orElseThrow(() -> StagecraftException.user("Invalid step '%s': workflow %s has no such "
        + "step (expected one of: %s)", id, spec.source(), String.join(", ", spec.order())));
  }

  public WorkflowSpec spec() {
    return spec;
  }

  /** The workflow as YAML text (what a child JVM runs; without the {@link #set} overrides, which go as --set). */
  public String yaml() {
    return text;
  }

  /** The file it was loaded from, unless it was given as text, built in code, or changed since. */
  public Optional<Path> file() {
    return file;
  }

  /** Parameter values that replace the workflow's own ({@code --set key=value}). */
  public Map<String, String> overrides() {
    return overrides;
  }

  /** A copy with parameter {@code param} set to {@code value} (as {@code --set}); the parameter must exist. */
  public Workflow set(String param, String value) {
    if (!spec.params().containsKey(param)) {
      throw StagecraftException.user("Invalid parameter '%s': workflow %s has no such parameter (expected one of: %s)",
          param, spec.source(), String.join(", ", new TreeSet<>(spec.params().keySet())));
    }
    Map<String, String> copy = new LinkedHashMap<>(overrides);
    copy.put(param, requireNonNull(value, "value is null"));
    return new Workflow(loader, spec, text, file, copy);
  }

  /**
   * A copy whose {@code policies} are replaced: a map of policy name → policy fields (as under {@code policies:} in
   * YAML), or a String naming a policies file (relative to the workflow's folder). Validated again, so a step naming a
   * policy the new set lacks is reported.
   */
  public Workflow withPolicies(Object policies) {
    return with("policies", policies);
  }

  /**
   * A copy with a top-level field set, as in YAML: e.g. {@code with("sizing", "auto")}, {@code with("deadline",
   * "30m")}. Validated again, so a bad value is reported naming the field.
   */
  public Workflow with(String field, Object value) {
    requireNonNull(field, "field is null");
    requireNonNull(value, "value is null");
    ObjectNode root;
    try {
      root = (ObjectNode) YAML.readTree(text);
    } catch (JsonProcessingException | ClassCastException e) {
      throw StagecraftException.user("Cannot change field '%s' of %s: its YAML cannot be read again (%s)", field,
          spec.source(), e.getMessage());
    }
    root.set(field, YAML.valueToTree(value));
    String changed = write(root);
    String source = spec.source() + " (" + field + " replaced)";
    return new Workflow(loader, loader.parse(source, changed, spec.directory()), changed, Optional.empty(), overrides);
  }

  static String write(Object tree) {
    try {
      return YAML.writeValueAsString(tree);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("Cannot write a workflow as YAML: " + e.getMessage(), e);
    }
  }

  @Override
  public String toString() {
    List<String> parts = new ArrayList<>();
    for (StepConfig s : spec.steps()) {
      parts.add(s.id() + " (" + s.kind() + s.policy().map(p -> ", policy " + p).orElse("") + ")");
    }
    return "workflow " + spec.name() + " from " + spec.source() + ": " + String.join(" → ", parts)
        + (overrides.isEmpty() ? "" : " with " + overrides);
  }

  /**
   * A workflow built in code: the same fields as the YAML file, checked by the same loader when {@link #build} is
   * called. Relative paths are relative to the session's current folder.
   */
  public static final class Builder {
    private final WorkflowLoader loader;
    private final String directory;
    private final Map<String, Object> root = new LinkedHashMap<>();
    private final Map<String, Object> params = new LinkedHashMap<>();
    private final List<Map<String, Object>> steps = new ArrayList<>();
    private Object policies;

    Builder(WorkflowLoader loader, String name, String directory) {
      this.loader = loader;
      this.directory = directory;
      root.put("name", requireNonNull(name, "name is null"));
    }

    public Builder param(String name, Object value) {
      params.put(name, String.valueOf(value));
      return this;
    }

    /** A step: its id, kind and the kind's fields (e.g. {@code Map.of("path", "…", "format", "libsvm")}). */
    public Builder step(String id, String kind, Map<String, ?> fields) {
      Map<String, Object> s = new LinkedHashMap<>();
      s.put("id", id);
      s.put("kind", kind);
      s.putAll(fields);
      steps.add(s);
      return this;
    }

    /** The workflow's policies: a map as under {@code policies:} in YAML, or the path of a policies file. */
    public Builder policies(Object value) {
      this.policies = value;
      return this;
    }

    public Workflow build() {
      Map<String, Object> tree = new LinkedHashMap<>(root);
      if (!params.isEmpty()) {
        tree.put("params", params);
      }
      if (policies != null) {
        tree.put("policies", policies);
      }
      tree.put("steps", steps);
      String text = write(tree);
      String source = "workflow '" + root.get("name") + "' (built in a notebook)";
      return new Workflow(loader, loader.parse(source, text, directory), text, Optional.empty(), Map.of());
    }
  }
}
