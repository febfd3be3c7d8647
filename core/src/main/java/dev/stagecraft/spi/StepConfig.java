package dev.stagecraft.spi;

import static java.util.Objects.requireNonNull;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A step as its kind sees it: the common fields and the kind-specific ones, with parameters substituted.
 *
 * <p>Field values are what YAML gives: {@link String}, {@link Number}, {@link Boolean}, {@link List} and {@link Map}.
 * The typed accessors convert them and throw a {@link ErrorCategory#USER} error naming the file, step and field.
 *
 * @param source the workflow file the step came from, as the user named it (for messages)
 */
public record StepConfig(
    String source, String id, String kind, List<String> after, Optional<String> policy, Map<String, Object> fields) {

  public StepConfig {
    requireNonNull(source, "source is null");
    requireNonNull(id, "id is null");
    requireNonNull(kind, "kind is null");
    after = List.copyOf(after);
    requireNonNull(policy, "policy is null");
    fields = Collections.unmodifiableMap(new LinkedHashMap<>(fields));
  }

  /** A copy with other field values (used when step-output references are filled in at run time). */
  public StepConfig withFields(Map<String, Object> newFields) {
    return new StepConfig(source, id, kind, after, policy, newFields);
  }

  public boolean has(String field) {
    return fields.get(field) != null;
  }

  public String requireString(String field) {
    return string(field).orElseThrow(() -> invalid(field, "is missing"));
  }

  public Optional<String> string(String field) {
    Object v = fields.get(field);
    if (v == null) {
      return Optional.empty();
    }
    if (v instanceof Map || v instanceof List) {
      throw invalid(field, "is a " + shape(v) + " (expected a single value)");
    }
    return Optional.of(v.toString());
  }

  public int intValue(String field, int defaultValue) {
    Optional<String> s = string(field);
    if (s.isEmpty()) {
      return defaultValue;
    }
    try {
      return Integer.parseInt(s.get().trim());
    } catch (NumberFormatException e) {
      throw invalid(field, "'" + s.get() + "' is not an integer");
    }
  }

  /** A string list; a single scalar counts as a list of one. */
  public List<String> stringList(String field) {
    Object v = fields.get(field);
    if (v == null) {
      return List.of();
    }
    if (v instanceof List<?> list) {
      List<String> out = new ArrayList<>();
      for (Object o : list) {
        if (o instanceof Map || o instanceof List) {
          throw invalid(field, "has a " + shape(o) + " item (expected a list of values)");
        }
        out.add(String.valueOf(o));
      }
      return List.copyOf(out);
    }
    if (v instanceof Map) {
      throw invalid(field, "is a map (expected a list of values)");
    }
    return List.of(v.toString());
  }

  /** A map of string keys to scalar values, as strings (e.g. reader options). */
  public Map<String, String> stringMap(String field) {
    Object v = fields.get(field);
    if (v == null) {
      return Map.of();
    }
    if (!(v instanceof Map<?, ?> map)) {
      throw invalid(field, "is a " + shape(v) + " (expected a map of key: value)");
    }
    Map<String, String> out = new LinkedHashMap<>();
    for (Map.Entry<?, ?> e : map.entrySet()) {
      if (e.getValue() instanceof Map || e.getValue() instanceof List) {
        throw invalid(field + "." + e.getKey(), "is a " + shape(e.getValue()) + " (expected a single value)");
      }
      out.put(String.valueOf(e.getKey()), e.getValue() == null ? null : String.valueOf(e.getValue()));
    }
    return Collections.unmodifiableMap(out);
  }

  /** A user error about one field of this step: "FILE: step 'ID' field 'FIELD': PROBLEM". */
  public StagecraftException invalid(String field, String problem) {
    return new StagecraftException(ErrorCategory.USER, where(field) + ": " + problem);
  }

  /** "FILE: step 'ID' field 'FIELD'", the prefix of every message about a field. */
  public String where(String field) {
    return source + ": step '" + id + "' field '" + field + "'";
  }

  static String shape(Object v) {
    if (v instanceof Map) {
      return "map";
    }
    if (v instanceof List) {
      return "list";
    }
    return "value";
  }
}
