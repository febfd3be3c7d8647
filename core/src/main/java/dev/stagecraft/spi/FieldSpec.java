package dev.stagecraft.spi;

import static java.util.Objects.requireNonNull;

/**
 * One kind-specific field of a step: its name, whether it must be present, its type, and what a user should write
 * there (used in error messages: "... (expected {@code expected})").
 */
public record FieldSpec(String name, boolean required, Type type, String expected) {
  /** The YAML shapes a field may take. */
  public enum Type {
    STRING,
    /** A list of strings (a single string is accepted as a one-element list). */
    STRING_LIST,
    /** A map of string keys to scalar values. */
    MAP,
    INTEGER,
    NUMBER,
    BOOLEAN,
    /**
     * An input: the id of another step (whose table output is read, and which becomes a dependency) or a path/URI.
     * Read it with {@link StepContext#input}.
     */
    INPUT,
    /** Anything, checked by the kind itself. */
    ANY
  }

  public FieldSpec {
    requireNonNull(name, "name is null");
    requireNonNull(type, "type is null");
    requireNonNull(expected, "expected is null");
  }

  public static FieldSpec required(String name, Type type, String expected) {
    return new FieldSpec(name, true, type, expected);
  }

  public static FieldSpec optional(String name, Type type, String expected) {
    return new FieldSpec(name, false, type, expected);
  }
}
