package dev.stagecraft.training.model;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.spi.StagecraftException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * What to train: the network, its optimizer and the training schedule.
 *
 * <p>Invalid values fail with {@code Invalid model field 'NAME': VALUE (expected …)}, NAME being the workflow key
 * ({@code batch_size}, not {@code batchSize}); the caller prefixes the file and step.
 *
 * @param type network shape: {@code logistic} and {@code linear} have no hidden layer, {@code mlp} has
 *     {@code hidden}
 * @param hidden widths of the hidden layers, in order; non-empty exactly for {@code mlp}
 * @param activation activation after each hidden layer (ignored without hidden layers)
 * @param dropout dropout rate after each hidden activation, 0 &le; dropout &lt; 1; only {@code mlp} may set it
 * @param epochs passes over the training data, at least 1
 * @param batchSize global batch size (summed over all workers), at least 1
 * @param optimizer {@code sgd} (with {@code momentum}) or {@code adam}
 * @param lr learning rate, positive and finite
 * @param momentum SGD momentum, 0 &le; momentum &lt; 1 (0 is plain SGD); ignored by Adam
 * @param seed seeds parameter initialisation and dropout
 */
public record ModelSpec(
    Type type,
    List<Integer> hidden,
    Activation activation,
    double dropout,
    int epochs,
    int batchSize,
    OptimizerName optimizer,
    double lr,
    double momentum,
    long seed) {

  // Workflow keys, each beside its default.
  public static final String TYPE = "type";
  public static final String HIDDEN = "hidden";
  public static final String ACTIVATION = "activation";
  public static final Activation ACTIVATION_DEFAULT = Activation.RELU;
  public static final String DROPOUT = "dropout";
  public static final double DROPOUT_DEFAULT = 0.0;
  public static final String EPOCHS = "epochs";
  public static final int EPOCHS_DEFAULT = 10;
  public static final String BATCH_SIZE = "batch_size";
  public static final int BATCH_SIZE_DEFAULT = 256;
  public static final String OPTIMIZER = "optimizer";
  public static final OptimizerName OPTIMIZER_DEFAULT = OptimizerName.ADAM;
  /** Default of {@value #LR} depends on the optimizer: {@link #LR_DEFAULT_SGD} or {@link #LR_DEFAULT_ADAM}. */
  public static final String LR = "lr";
  public static final double LR_DEFAULT_SGD = 0.1;
  public static final double LR_DEFAULT_ADAM = 0.001;
  public static final String MOMENTUM = "momentum";
  public static final double MOMENTUM_DEFAULT = 0.9;
  public static final String SEED = "seed";
  public static final long SEED_DEFAULT = 42L;

  /** Every key {@link #fromMap} reads. */
  public static final Set<String> KEYS =
      Set.of(TYPE, HIDDEN, ACTIVATION, DROPOUT, EPOCHS, BATCH_SIZE, OPTIMIZER, LR, MOMENTUM, SEED);

  /** Network shape. */
  public enum Type {
    LOGISTIC,
    LINEAR,
    MLP;

    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }

    /** @throws StagecraftException naming the field and the valid values */
    public static Type parse(String value) {
      return parseEnum(TYPE, value, values());
    }
  }

  /** Activation after each hidden layer. */
  public enum Activation {
    RELU,
    TANH,
    SIGMOID;

    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }

    /** @throws StagecraftException naming the field and the valid values */
    public static Activation parse(String value) {
      return parseEnum(ACTIVATION, value, values());
    }
  }

  /** Optimizer over the flat parameter vector (see {@link Optimizer}). */
  public enum OptimizerName {
    SGD,
    ADAM;

    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }

    /** @throws StagecraftException naming the field and the valid values */
    public static OptimizerName parse(String value) {
      return parseEnum(OPTIMIZER, value, values());
    }
  }

  public ModelSpec {
    requireNonNull(type, "type is null");
    requireNonNull(hidden, "hidden is null");
    requireNonNull(activation, "activation is null");
    requireNonNull(optimizer, "optimizer is null");
    hidden = List.copyOf(hidden);
    if (type == Type.MLP) {
      if (hidden.isEmpty()) {
        throw invalid(HIDDEN, "[]", "at least one hidden layer for type 'mlp'");
      }
      for (int width : hidden) {
        if (width < 1) {
          throw invalid(HIDDEN, hidden, "layer widths of at least 1");
        }
      }
    } else if (!hidden.isEmpty()) {
      throw invalid(HIDDEN, hidden, "no hidden layers for type '" + type.label() + "'; use type 'mlp'");
    }
    if (!(dropout >= 0 && dropout < 1)) {
      throw invalid(DROPOUT, dropout, "0 <= dropout < 1");
    }
    if (dropout > 0 && type != Type.MLP) {
      throw invalid(DROPOUT, dropout, "0 for type '" + type.label() + "', which has no hidden layer");
    }
    if (epochs < 1) {
      throw invalid(EPOCHS, epochs, "at least 1");
    }
    if (batchSize < 1) {
      throw invalid(BATCH_SIZE, batchSize, "at least 1");
    }
    if (!(lr > 0) || Double.isInfinite(lr)) {
      throw invalid(LR, lr, "a positive finite number");
    }
    if (!(momentum >= 0 && momentum < 1)) {
      throw invalid(MOMENTUM, momentum, "0 <= momentum < 1");
    }
  }

  /**
   * Reads a spec from workflow values (as a YAML parser returns them: strings, numbers, lists), applying the
   * defaults above. Only {@link #KEYS} are read; other keys are the caller's business.
   *
   * @throws StagecraftException if {@value #TYPE} is missing or a value is invalid
   */
  public static ModelSpec fromMap(Map<String, ?> values) {
    requireNonNull(values, "values is null");
    Object typeValue = values.get(TYPE);
    if (typeValue == null) {
      throw StagecraftException.user(
          "Invalid model field '%s': missing (expected one of: %s)", TYPE, labels(Type.values()));
    }
    Type type = Type.parse(typeValue.toString());
    OptimizerName optimizer =
        values.containsKey(OPTIMIZER) ? OptimizerName.parse(string(values, OPTIMIZER)) : OPTIMIZER_DEFAULT;
    Activation activation =
        values.containsKey(ACTIVATION) ? Activation.parse(string(values, ACTIVATION)) : ACTIVATION_DEFAULT;
    double defaultLr = optimizer == OptimizerName.SGD ? LR_DEFAULT_SGD : LR_DEFAULT_ADAM;
    return new ModelSpec(
        type,
        intList(values, HIDDEN),
        activation,
        number(values, DROPOUT, DROPOUT_DEFAULT),
        integer(values, EPOCHS, EPOCHS_DEFAULT),
        integer(values, BATCH_SIZE, BATCH_SIZE_DEFAULT),
        optimizer,
        number(values, LR, defaultLr),
        number(values, MOMENTUM, MOMENTUM_DEFAULT),
        longInteger(values, SEED, SEED_DEFAULT));
  }

  /** The spec as workflow values, for manifests; {@code fromMap(toMap())} equals this spec. */
  public Map<String, Object> toMap() {
    Map<String, Object> map = new LinkedHashMap<>();
    map.put(TYPE, type.label());
    map.put(HIDDEN, hidden);
    map.put(ACTIVATION, activation.label());
    map.put(DROPOUT, dropout);
    map.put(EPOCHS, epochs);
    map.put(BATCH_SIZE, batchSize);
    map.put(OPTIMIZER, optimizer.label());
    map.put(LR, lr);
    map.put(MOMENTUM, momentum);
    map.put(SEED, seed);
    return map;
  }

  /**
   * Checks that this network fits the task: {@code logistic} classifies, {@code linear} regresses, {@code mlp} does
   * either.
   *
   * @throws StagecraftException naming the field and the types valid for the task
   */
  public void checkTask(Task task) {
    requireNonNull(task, "task is null");
    boolean fits =
        switch (type) {
          case LOGISTIC -> task.isClassification();
          case LINEAR -> task == Task.REGRESSION;
          case MLP -> true;
        };
    if (!fits) {
      String valid = task.isClassification() ? "logistic, mlp" : "linear, mlp";
      throw StagecraftException.user(
          "Invalid model field '%s': '%s' (expected one of: %s for a %s task)", TYPE, type.label(), valid,
          task.label());
    }
  }

  private static StagecraftException invalid(String field, Object value, String expected) {
    return StagecraftException.user("Invalid model field '%s': %s (expected %s)", field, value, expected);
  }

  private static <E extends Enum<E>> E parseEnum(String field, String value, E[] constants) {
    String v = value == null ? "" : value.trim().toLowerCase(Locale.ROOT);
    for (E c : constants) {
      if (c.name().toLowerCase(Locale.ROOT).equals(v)) {
        return c;
      }
    }
    throw StagecraftException.user(
        "Invalid model field '%s': '%s' (expected one of: %s)", field, value, labels(constants));
  }

  private static String labels(Enum<?>[] constants) {
    return Arrays.stream(constants).map(c -> c.name().toLowerCase(Locale.ROOT)).collect(Collectors.joining(", "));
  }

  private static String string(Map<String, ?> values, String key) {
    Object v = values.get(key);
    return v == null ? null : v.toString();
  }

  private static double number(Map<String, ?> values, String key, double defaultValue) {
    Object v = values.get(key);
    if (v == null) {
      return defaultValue;
    }
    if (v instanceof Number n) {
      return n.doubleValue();
    }
    try {
      return Double.parseDouble(v.toString().trim());
    } catch (NumberFormatException e) {
      throw invalid(key, "'" + v + "'", "a number");
    }
  }

  private static long longInteger(Map<String, ?> values, String key, long defaultValue) {
    Object v = values.get(key);
    if (v == null) {
      return defaultValue;
    }
    if (v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof Byte) {
      return ((Number) v).longValue();
    }
    try {
      return Long.parseLong(v.toString().trim());
    } catch (NumberFormatException e) {
      throw invalid(key, v instanceof Number ? v : "'" + v + "'", "an integer");
    }
  }

  private static int integer(Map<String, ?> values, String key, int defaultValue) {
    long v = longInteger(values, key, defaultValue);
    if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
      throw invalid(key, v, "an integer below 2^31");
    }
    return (int) v;
  }

  private static List<Integer> intList(Map<String, ?> values, String key) {
    Object v = values.get(key);
    if (v == null) {
      return List.of();
    }
    if (!(v instanceof List<?> list)) {
      throw invalid(key, v instanceof Number ? v : "'" + v + "'", "a list of layer widths such as [64, 32]");
    }
    List<Integer> widths = new ArrayList<>(list.size());
    for (Object item : list) {
      if (!(item instanceof Integer || item instanceof Long) || ((Number) item).longValue() > Integer.MAX_VALUE) {
        throw invalid(key, list, "a list of layer widths such as [64, 32]");
      }
      widths.add(((Number) item).intValue());
    }
    return widths;
  }
}
