package dev.stagecraft.policies;

import dev.stagecraft.policies.ResourcePolicy.Allocation;
import dev.stagecraft.policies.ResourcePolicy.Collectives;
import dev.stagecraft.policies.ResourcePolicy.Executor;
import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.policies.ResourcePolicy.Rapids;
import dev.stagecraft.policies.ResourcePolicy.Task;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads resource policies from what YAML gives (maps, strings, numbers) and holds the built-in defaults.
 *
 * <p>Shape of one policy (every field optional; defaults in {@link #DEFAULTS_DOC}):
 * <pre>
 * gpu-inference:
 *   executor: { cores: 4, memory: 16g, memory_overhead: 2g, gpus: 1, gpu_type: t4 }
 *   task: { cpus: 1, gpus: 0.25 }
 *   allocation: { mode: dynamic, min: 0, max: 4, initial: 0, idle_timeout: 60s }   # or { mode: static, executors: 2 }
 *   market: spot                       # or on_demand
 *   pool: inference                    # FAIR scheduler pool (default: the policy's name)
 *   priority: 2                        # the pool's weight
 *   rapids: { enabled: true, concurrent_gpu_tasks: 2 }
 *   collectives: { integrity: mac }    # or encrypt (default), none: the train step's ring traffic
 * </pre>
 * Workflow policies are added to the built-ins and replace a built-in of the same name.
 */
public final class Policies {
  static final String DEFAULTS_DOC = "executor {cores 1, memory 1g, memory_overhead max(384m, 10% of memory), gpus 0}, "
      + "task {cpus 1, gpus 0}, allocation {mode static, executors 1}, market on_demand, pool = name, priority 1, "
      + "rapids off, collectives {integrity: the train step's default, encrypt}";

  public static final List<String> POLICY_FIELDS =
      List.of("executor", "task", "allocation", "market", "pool", "priority", "rapids", "collectives");
  static final List<String> EXECUTOR_FIELDS = List.of("cores", "memory", "memory_overhead", "gpus", "gpu_type");
  static final List<String> TASK_FIELDS = List.of("cpus", "gpus");
  static final List<String> ALLOCATION_FIELDS = List.of("mode", "executors", "min", "max", "initial", "idle_timeout");
  static final List<String> RAPIDS_FIELDS = List.of("enabled", "concurrent_gpu_tasks");
  static final List<String> COLLECTIVES_FIELDS = List.of("integrity");
  private static final Pattern NAME = Pattern.compile("[A-Za-z][A-Za-z0-9_-]*");

  /** The built-in policies: {@code local}, {@code cpu-etl}, {@code gpu-training}, {@code gpu-inference}. */
  public static final Map<String, ResourcePolicy> BUILT_IN = builtIns();

  private Policies() {}

  /** Policies and the problems found reading them (each "SOURCE: policy 'NAME' field 'F': …"). */
  public record Parsed(Map<String, ResourcePolicy> policies, List<String> problems) {
    public Parsed {
      policies = Collections.unmodifiableMap(new LinkedHashMap<>(policies));
      problems = List.copyOf(problems);
    }
  }

  /**
   * Reads a map of policy name to policy (as YAML gives it) and merges it over the built-ins.
   *
   * @param source where the map came from, for messages (the workflow or policy file)
   * @param node the map; null for none
   */
  public static Parsed parse(String source, Object node) {
    List<String> problems = new ArrayList<>();
    Map<String, ResourcePolicy> out = new LinkedHashMap<>(BUILT_IN);
    if (node == null) {
      return new Parsed(out, problems);
    }
    if (!(node instanceof Map<?, ?> map)) {
      problems.add(source + ": field 'policies': is a " + shape(node)
          + " (expected a map of policy name to policy, or the path of a policy file)");
      return new Parsed(out, problems);
    }
    for (Map.Entry<?, ?> e : map.entrySet()) {
      String name = String.valueOf(e.getKey());
      Reader r = new Reader(source, name, problems);
      if (!NAME.matcher(name).matches()) {
        problems.add(source + ": policy '" + name
            + "': invalid name (expected letters, digits, '-' and '_', starting with a letter)");
        continue;
      }
      ResourcePolicy p = r.policy(e.getValue());
      if (p != null) {
        out.put(name, p);
      }
    }
    return new Parsed(out, problems);
  }

  /** "cpu-etl, gpu-inference, …": the names in {@code policies}, sorted, for messages. */
  public static String names(Map<String, ResourcePolicy> policies) {
    return String.join(", ", new TreeSet<>(policies.keySet()));
  }

  /** Reads one policy, adding problems instead of throwing so that every problem is reported at once. */
  private static final class Reader {
    private final String source;
    private final String name;
    private final List<String> problems;
    private final int before;

    Reader(String source, String name, List<String> problems) {
      this.source = source;
      this.name = name;
      this.problems = problems;
      this.before = problems.size();
    }

    void problem(String field, String text) {
      problems.add(source + ": policy '" + name + "' field '" + field + "': " + text);
    }

    ResourcePolicy policy(Object node) {
      Map<String, Object> m = map(node, null, POLICY_FIELDS);
      if (m == null) {
        return null;
      }
      Map<String, Object> ex = map(m.get("executor"), "executor", EXECUTOR_FIELDS);
      Map<String, Object> ta = map(m.get("task"), "task", TASK_FIELDS);
      Map<String, Object> al = map(m.get("allocation"), "allocation", ALLOCATION_FIELDS);
      Object rapidsNode = m.get("rapids");
      Map<String, Object> ra = rapidsNode instanceof Boolean ? Map.of("enabled", rapidsNode)
          : map(rapidsNode, "rapids", RAPIDS_FIELDS);
      Map<String, Object> co = map(m.get("collectives"), "collectives", COLLECTIVES_FIELDS);

      int cores = integer(ex, "executor", "cores", 1, 1);
      long memory = memory(ex, "executor", "memory", 1024);
      long overhead = ex.containsKey("memory_overhead") ? memory(ex, "executor", "memory_overhead", 0)
          : Math.max(384, memory / 10);
      int gpus = integer(ex, "executor", "gpus", 0, 0);
      Optional<String> gpuType = Optional.ofNullable(ex.get("gpu_type")).map(String::valueOf);
      if (gpuType.isPresent() && gpus == 0) {
        problem("executor.gpu_type", "'" + gpuType.get() + "' is set but executor.gpus is 0 (expected gpus >= 1)");
      }
      int taskCpus = integer(ta, "task", "cpus", 1, 1);
      if (taskCpus > cores) {
        problem("task.cpus", taskCpus + " is more than the executor's " + cores
            + " cores (expected at most executor.cores)");
      }
      double taskGpus = number(ta, "task", "gpus", 0);
      if (taskGpus > gpus) {
        problem("task.gpus", fmt(taskGpus) + " is more than the executor's " + gpus
            + " GPU(s) (expected at most executor.gpus)");
      } else if (taskGpus > 0 && taskGpus < 1 && !dividesOne(taskGpus)) {
        problem("task.gpus", fmt(taskGpus) + " does not divide one GPU evenly (expected 1/n of a GPU, e.g. 0.5, "
            + "0.25 or 0.125, or a whole number)");
      } else if (taskGpus > 1 && taskGpus != Math.rint(taskGpus)) {
        problem("task.gpus", fmt(taskGpus) + " is neither a fraction of one GPU nor a whole number of GPUs "
            + "(expected e.g. 0.5, 1 or 2)");
      } else if (taskGpus > 0 && taskGpus < 1 && Math.round(1 / taskGpus) * taskCpus > cores) {
        problem("task.gpus", fmt(taskGpus) + " lets " + Math.round(1 / taskGpus) + " tasks share a GPU but the "
            + "executor's " + cores + " cores run only " + cores / taskCpus
            + " tasks at once (expected executor.cores >= task.cpus / task.gpus)");
      }

      Allocation allocation = allocation(al);
      Market market = market(m.get("market"));
      String pool = m.containsKey("pool") && m.get("pool") != null ? String.valueOf(m.get("pool")) : name;
      int priority = integer(m, "", "priority", 1, 1);
      boolean rapidsOn = bool(ra, "rapids", "enabled", false);
      int concurrent = integer(ra, "rapids", "concurrent_gpu_tasks", 1, 1);
      if (rapidsOn && gpus == 0) {
        problem("rapids.enabled", "true needs GPUs but executor.gpus is 0 (expected executor.gpus >= 1)");
      }
      Collectives collectives = collectives(co);
      if (problems.size() > before) {
        return null;
      }
      return new ResourcePolicy(name, new Executor(cores, memory, overhead, gpus, gpuType),
          new Task(taskCpus, taskGpus), allocation, market, pool, priority, new Rapids(rapidsOn, concurrent),
          collectives);
    }

    private Collectives collectives(Map<String, Object> co) {
      Object v = co.get("integrity");
      if (v == null) {
        return Collectives.DEFAULT;
      }
      String mode = String.valueOf(v).trim().toLowerCase(Locale.ROOT);
      if (!Collectives.INTEGRITY_MODES.contains(mode)) {
        problem("collectives.integrity", "unknown mode '" + v + "' (expected one of: "
            + String.join(", ", Collectives.INTEGRITY_MODES) + ")");
        return Collectives.DEFAULT;
      }
      return new Collectives(Optional.of(mode));
    }

    private Allocation allocation(Map<String, Object> al) {
      String mode = al.containsKey("mode") ? String.valueOf(al.get("mode")).toLowerCase(Locale.ROOT) : "static";
      if (mode.equals("static")) {
        for (String f : List.of("min", "max", "initial", "idle_timeout")) {
          if (al.containsKey(f)) {
            problem("allocation." + f, "only applies to mode dynamic (expected allocation.executors for mode static)");
          }
        }
        int executors = integer(al, "allocation", "executors", 1, 1);
        return new Allocation(Allocation.Mode.STATIC, executors, executors, executors, executors, Duration.ZERO);
      }
      if (!mode.equals("dynamic")) {
        problem("allocation.mode", "unknown mode '" + mode + "' (expected static or dynamic)");
        return new Allocation(Allocation.Mode.STATIC, 1, 1, 1, 1, Duration.ZERO);
      }
      if (al.containsKey("executors")) {
        problem("allocation.executors", "only applies to mode static (expected min, max, initial for mode dynamic)");
      }
      int min = integer(al, "allocation", "min", 0, 0);
      int max = integer(al, "allocation", "max", Math.max(1, min), 1);
      int initial = integer(al, "allocation", "initial", min, 0);
      if (min > max) {
        problem("allocation.min", min + " is more than allocation.max " + max + " (expected min <= max)");
      } else if (initial < min || initial > max) {
        problem("allocation.initial", initial + " is outside [" + min + ", " + max + "] (expected min <= initial <= max)");
      }
      Duration idle = duration(al, "allocation", "idle_timeout", Duration.ofSeconds(60));
      return new Allocation(Allocation.Mode.DYNAMIC, 0, min, max, initial, idle);
    }

    private Market market(Object node) {
      if (node == null) {
        return Market.ON_DEMAND;
      }
      String v = String.valueOf(node).toLowerCase(Locale.ROOT);
      return switch (v) {
        case "on_demand" -> Market.ON_DEMAND;
        case "spot" -> Market.SPOT;
        default -> {
          problem("market", "unknown market '" + node + "' (expected on_demand or spot)");
          yield Market.ON_DEMAND;
        }
      };
    }

    /** The map at {@code field}, empty if absent; unknown keys reported. */
    @SuppressWarnings("unchecked")
    private Map<String, Object> map(Object node, String field, List<String> known) {
      if (node == null) {
        return field == null ? null : Map.of();
      }
      if (!(node instanceof Map<?, ?> raw)) {
        if (field == null) {
          problems.add(source + ": policy '" + name + "': is a " + shape(node)
              + " (expected a map with some of: " + String.join(", ", known) + ")");
          return null;
        }
        problem(field, "is a " + shape(node) + " (expected a map with some of: " + String.join(", ", known) + ")");
        return Map.of();
      }
      Map<String, Object> m = new LinkedHashMap<>();
      ((Map<Object, Object>) raw).forEach((k, v) -> m.put(String.valueOf(k), v));
      for (String k : m.keySet()) {
        if (!known.contains(k)) {
          problem(field == null ? k : field + "." + k, "unknown field (expected one of: " + String.join(", ", known)
              + ")");
        }
      }
      return m;
    }

    private int integer(Map<String, Object> m, String prefix, String field, int dflt, int atLeast) {
      Object v = m.get(field);
      String where = prefix.isEmpty() ? field : prefix + "." + field;
      if (v == null) {
        return dflt;
      }
      try {
        int i = v instanceof Number n && n.doubleValue() == Math.rint(n.doubleValue()) ? n.intValue()
            : Integer.parseInt(String.valueOf(v).trim());
        if (i < atLeast) {
          problem(where, i + " is too small (expected an integer >= " + atLeast + ")");
        }
        return i;
      } catch (NumberFormatException e) {
        problem(where, "'" + v + "' is not an integer");
        return dflt;
      }
    }

    private double number(Map<String, Object> m, String prefix, String field, double dflt) {
      Object v = m.get(field);
      if (v == null) {
        return dflt;
      }
      try {
        double d = v instanceof Number n ? n.doubleValue() : Double.parseDouble(String.valueOf(v).trim());
        if (d < 0 || Double.isNaN(d) || Double.isInfinite(d)) {
          problem(prefix + "." + field, fmt(d) + " is invalid (expected a number >= 0)");
        }
        return d;
      } catch (NumberFormatException e) {
        problem(prefix + "." + field, "'" + v + "' is not a number");
        return dflt;
      }
    }

    private boolean bool(Map<String, Object> m, String prefix, String field, boolean dflt) {
      Object v = m.get(field);
      if (v == null) {
        return dflt;
      }
      String s = String.valueOf(v).toLowerCase(Locale.ROOT);
      if (s.equals("true") || s.equals("on")) {
        return true;
      }
      if (s.equals("false") || s.equals("off")) {
        return false;
      }
      problem(prefix + "." + field, "'" + v + "' is not true or false");
      return dflt;
    }

    private long memory(Map<String, Object> m, String prefix, String field, long dflt) {
      Object v = m.get(field);
      if (v == null) {
        return dflt;
      }
      Optional<Long> mib = Sizes.mebibytes(String.valueOf(v));
      if (mib.isEmpty()) {
        problem(prefix + "." + field, "'" + v + "' is not a memory size (expected e.g. 512m, 8g or 8gb)");
        return dflt;
      }
      return mib.get();
    }

    private Duration duration(Map<String, Object> m, String prefix, String field, Duration dflt) {
      Object v = m.get(field);
      if (v == null) {
        return dflt;
      }
      Optional<Duration> d = Sizes.duration(String.valueOf(v));
      if (d.isEmpty()) {
        problem(prefix + "." + field, "'" + v + "' is not a duration (expected e.g. 500ms, 60s or 2m)");
        return dflt;
      }
      return d.get();
    }
  }

  /** True if one GPU splits into a whole number of {@code amount}-sized shares. */
  static boolean dividesOne(double amount) {
    double parts = 1 / amount;
    return Math.abs(parts - Math.rint(parts)) < 1e-9;
  }

  static String fmt(double d) {
    return d == Math.rint(d) ? String.valueOf((long) d) : String.valueOf(d);
  }

  private static String shape(Object v) {
    return v instanceof Map ? "map" : v instanceof List ? "list" : "value '" + v + "'";
  }

  private static Map<String, ResourcePolicy> builtIns() {
    Map<String, ResourcePolicy> m = new LinkedHashMap<>();
    Rapids off = new Rapids(false, 1);
    // Everything in one JVM; what local mode cannot honour is logged when a run starts.
    m.put("local", new ResourcePolicy("local", new Executor(1, 1024, 384, 0, Optional.empty()), new Task(1, 0),
        new Allocation(Allocation.Mode.STATIC, 1, 1, 1, 1, Duration.ZERO), Market.ON_DEMAND, "local", 1, off,
        Collectives.DEFAULT));
    // CPU work scales with data: grow and shrink, give executors back a minute after their last task.
    m.put("cpu-etl", new ResourcePolicy("cpu-etl", new Executor(4, 8192, 1024, 0, Optional.empty()), new Task(1, 0),
        new Allocation(Allocation.Mode.DYNAMIC, 0, 0, 4, 1, Duration.ofSeconds(60)), Market.ON_DEMAND, "etl", 1,
        off, Collectives.DEFAULT));
    // Barrier training needs all its executors at once and refuses dynamic allocation (SPARK-24942): static.
    m.put("gpu-training", new ResourcePolicy("gpu-training", new Executor(4, 16384, 2048, 1, Optional.of("t4")),
        new Task(1, 1), new Allocation(Allocation.Mode.STATIC, 2, 2, 2, 2, Duration.ZERO), Market.ON_DEMAND,
        "training", 2, off, Collectives.DEFAULT));
    // Scoring is retryable task by task: spot GPUs, four tasks per GPU, released 30 s after the last task.
    m.put("gpu-inference", new ResourcePolicy("gpu-inference", new Executor(4, 16384, 2048, 1, Optional.of("t4")),
        new Task(1, 0.25), new Allocation(Allocation.Mode.DYNAMIC, 0, 0, 4, 0, Duration.ofSeconds(30)), Market.SPOT,
        "inference", 2, new Rapids(true, 2), Collectives.DEFAULT));
    return Collections.unmodifiableMap(m);
  }

  /** Memory sizes and durations as policies write them. */
  public static final class Sizes {
    private static final Pattern MEM = Pattern.compile("(?i)\\s*(\\d+)\\s*(k|m|g|t)?b?\\s*");
    private static final Pattern DUR = Pattern.compile("(?i)\\s*(\\d+)\\s*(ms|s|m|min|h)?\\s*");

    private Sizes() {}

    /** "8g" → 8192; a bare number is MiB (as Spark reads spark.executor.memory). */
    public static Optional<Long> mebibytes(String s) {
      Matcher m = MEM.matcher(s);
      if (!m.matches()) {
        return Optional.empty();
      }
      long n = Long.parseLong(m.group(1));
      String unit = m.group(2) == null ? "m" : m.group(2).toLowerCase(Locale.ROOT);
      return Optional.of(switch (unit) {
        case "k" -> Math.max(1, n / 1024);
        case "g" -> n * 1024;
        case "t" -> n * 1024 * 1024;
        default -> n;
      });
    }

    /** "60s", "2m", "500ms"; a bare number is seconds. */
    public static Optional<Duration> duration(String s) {
      Matcher m = DUR.matcher(s);
      if (!m.matches()) {
        return Optional.empty();
      }
      long n = Long.parseLong(m.group(1));
      String unit = m.group(2) == null ? "s" : m.group(2).toLowerCase(Locale.ROOT);
      return Optional.of(switch (unit) {
        case "ms" -> Duration.ofMillis(n);
        case "m", "min" -> Duration.ofMinutes(n);
        case "h" -> Duration.ofHours(n);
        default -> Duration.ofSeconds(n);
      });
    }
  }
}
