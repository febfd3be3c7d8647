package dev.stagecraft.policies.spark;

import dev.stagecraft.policies.ResourcePolicy;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.resource.ExecutorResourceRequests;
import org.apache.spark.resource.ResourceProfile;
import org.apache.spark.resource.ResourceProfileBuilder;
import org.apache.spark.resource.TaskResourceRequests;

/**
 * Resource policies in Spark's terms. Pure functions of the policies (and of the few Spark settings they read), so
 * every mapping is unit-tested without a cluster; the engine and the CLI only apply what these return.
 *
 * <p>Where Spark forces our hand:
 * <ul>
 *   <li>Executor-level {@link ResourceProfile}s need dynamic allocation (standalone, YARN, Kubernetes); with static
 *       executors only a task-level profile ({@code TaskResourceProfile}, Spark 3.4+, SPARK-39853) is possible.</li>
 *   <li>Dynamic allocation without an external shuffle service needs shuffle tracking, else executors holding
 *       shuffle files could never be released (SPARK-27963).</li>
 *   <li>Barrier stages refuse dynamic allocation (SPARK-24942): the loader already rejects that combination.</li>
 *   <li>Local mode has one executor (the driver) and supports no custom profiles at all.</li>
 * </ul>
 */
public final class SparkPolicies {
  public static final String GPU = "gpu";
  public static final String RAPIDS_PLUGIN = "com.nvidia.spark.SQLPlugin";

  private SparkPolicies() {}

  /**
   * The policy whose executors become the application's default profile: the first CPU-only policy in step order
   * (CPU work is usually most of a workflow and GPU executors are the ones worth releasing), else the first.
   */
  public static Optional<ResourcePolicy> basePolicy(List<ResourcePolicy> inStepOrder) {
    return inStepOrder.stream().filter(p -> !p.usesGpus()).findFirst().or(() -> inStepOrder.stream().findFirst());
  }

  /** True if any policy wants dynamic allocation; then the whole application uses it (it is an application setting). */
  public static boolean dynamicAllocation(Collection<ResourcePolicy> used) {
    return used.stream().anyMatch(p -> p.allocation().dynamic());
  }

  /**
   * Application-level settings for a workflow whose steps use {@code used}, with {@code base}'s executors as the
   * default profile.
   *
   * @param discoveryScript the GPU discovery script executors run (empty: the cluster manager's own, e.g. a standalone
   *     worker's {@code spark.worker.resource.gpu.discoveryScript})
   */
  public static Map<String, String> applicationConf(
      ResourcePolicy base, Collection<ResourcePolicy> used, Optional<String> discoveryScript) {
    Map<String, String> conf = new LinkedHashMap<>();
    List<ResourcePolicy> all = new ArrayList<>(new LinkedHashSet<>(used));
    if (!all.contains(base)) {
      all.add(0, base);
    }
    conf.put("spark.scheduler.mode", "FAIR");
    ResourcePolicy.Executor ex = base.executor();
    conf.put("spark.executor.cores", String.valueOf(ex.cores()));
    conf.put("spark.executor.memory", ex.memoryMib() + "m");
    conf.put("spark.executor.memoryOverhead", ex.memoryOverheadMib() + "m");
    conf.put("spark.task.cpus", String.valueOf(base.task().cpus()));
    if (ex.gpus() > 0) {
      conf.put("spark.executor.resource.gpu.amount", String.valueOf(ex.gpus()));
      conf.put("spark.task.resource.gpu.amount", amount(base.task().gpus()));
      discoveryScript.ifPresent(s -> conf.put("spark.executor.resource.gpu.discoveryScript", s));
    }
    if (dynamicAllocation(all)) {
      List<ResourcePolicy> dynamic = all.stream().filter(p -> p.allocation().dynamic()).toList();
      ResourcePolicy.Allocation a = base.allocation().dynamic() ? base.allocation() : dynamic.get(0).allocation();
      conf.put("spark.dynamicAllocation.enabled", "true");
      conf.put("spark.dynamicAllocation.shuffleTracking.enabled", "true");
      // Spark applies min/max/initial to each resource profile; the largest max bounds every profile.
      conf.put("spark.dynamicAllocation.minExecutors", String.valueOf(a.min()));
      conf.put("spark.dynamicAllocation.initialExecutors", String.valueOf(a.initial()));
      conf.put("spark.dynamicAllocation.maxExecutors",
          String.valueOf(dynamic.stream().mapToInt(p -> p.allocation().max()).max().orElse(a.max())));
      // One idle timeout for the application: the shortest any policy asks for, so no executor idles longer than
      // its policy allows.
      long idleMs = dynamic.stream().mapToLong(p -> p.allocation().idleTimeout().toMillis()).min().orElse(60_000);
      conf.put("spark.dynamicAllocation.executorIdleTimeout", idleMs + "ms");
      conf.put("spark.dynamicAllocation.shuffleTracking.timeout", idleMs + "ms");
    } else {
      conf.put("spark.dynamicAllocation.enabled", "false");
      conf.put("spark.executor.instances", String.valueOf(base.allocation().executors()));
    }
    Optional<ResourcePolicy> rapids = all.stream().filter(p -> p.rapids().enabled())
        .max(Comparator.comparingInt(p -> p.rapids().concurrentGpuTasks()));
    rapids.ifPresent(r -> {
      conf.put("spark.plugins", RAPIDS_PLUGIN);
      // Per-step on/off is a SQL setting of the step's session (stepSqlConf); the default follows the base policy.
      conf.put("spark.rapids.sql.enabled", String.valueOf(base.rapids().enabled()));
      conf.put("spark.rapids.sql.concurrentGpuTasks", String.valueOf(r.rapids().concurrentGpuTasks()));
      conf.put("spark.rapids.memory.pinnedPool.size", "0");
    });
    return conf;
  }

  /** The SQL settings of a step's own session (RAPIDS on or off for this step only). */
  public static Map<String, String> stepSqlConf(ResourcePolicy p) {
    return Map.of("spark.rapids.sql.enabled", String.valueOf(p.rapids().enabled()));
  }

  /**
   * The FAIR scheduler allocation file: one pool per policy, its weight the policy's priority. Pools not in the file
   * would be created with weight 1 (Spark's default), so a priority only takes effect through this file.
   */
  public static String fairSchedulerXml(Collection<ResourcePolicy> policies) {
    StringBuilder xml = new StringBuilder("<?xml version=\"1.0\"?>\n<allocations>\n");
    Map<String, Integer> pools = new LinkedHashMap<>();
    policies.forEach(p -> pools.merge(p.pool(), p.priority(), Math::max));
    pools.forEach((pool, weight) -> xml.append("  <pool name=\"").append(escape(pool)).append("\">\n")
        .append("    <schedulingMode>FAIR</schedulingMode>\n")
        .append("    <weight>").append(weight).append("</weight>\n")
        .append("    <minShare>0</minShare>\n")
        .append("  </pool>\n"));
    return xml.append("</allocations>\n").toString();
  }

  /** What a step's stages run with. */
  public enum ProfileKind {
    /** The application's default profile: the policy asks for nothing else. */
    DEFAULT,
    /** Executor and task requests: new executors of this shape (needs dynamic allocation). */
    EXECUTOR,
    /** Task requests only, on the existing (static) executors. */
    TASK
  }

  /**
   * Which profile a policy needs in an application with these settings.
   *
   * @param conf the application's Spark settings ({@code spark.executor.*}, {@code spark.task.*},
   *     {@code spark.dynamicAllocation.enabled})
   */
  public static ProfileKind profileKind(ResourcePolicy p, Map<String, String> conf) {
    boolean sameExecutors = String.valueOf(p.executor().cores()).equals(conf.getOrDefault("spark.executor.cores", ""))
        && (p.executor().memoryMib() + "m").equals(conf.getOrDefault("spark.executor.memory", ""))
        && String.valueOf(p.executor().gpus()).equals(conf.getOrDefault("spark.executor.resource.gpu.amount", "0"));
    boolean sameTasks = String.valueOf(p.task().cpus()).equals(conf.getOrDefault("spark.task.cpus", "1"))
        && amount(p.task().gpus()).equals(amount(
            Double.parseDouble(conf.getOrDefault("spark.task.resource.gpu.amount", "0"))));
    if (sameExecutors && sameTasks) {
      return ProfileKind.DEFAULT;
    }
    boolean dynamic = Boolean.parseBoolean(conf.getOrDefault("spark.dynamicAllocation.enabled", "false"));
    return dynamic && !sameExecutors ? ProfileKind.EXECUTOR : ProfileKind.TASK;
  }

  /**
   * The step's {@link ResourceProfile}: executor + task requests for {@link ProfileKind#EXECUTOR}, task requests only
   * (built as a {@code TaskResourceProfile}) for {@link ProfileKind#TASK}.
   */
  public static ResourceProfile profile(ResourcePolicy p, ProfileKind kind, Optional<String> discoveryScript) {
    if (kind == ProfileKind.DEFAULT) {
      throw new IllegalArgumentException("policy '" + p.name() + "' needs no profile of its own");
    }
    TaskResourceRequests task = new TaskResourceRequests().cpus(p.task().cpus());
    if (p.task().gpus() > 0) {
      task.resource(GPU, p.task().gpus());
    }
    ResourceProfileBuilder b = new ResourceProfileBuilder().require(task);
    if (kind == ProfileKind.EXECUTOR) {
      ExecutorResourceRequests ex = new ExecutorResourceRequests()
          .cores(p.executor().cores())
          .memory(p.executor().memoryMib() + "m")
          .memoryOverhead(p.executor().memoryOverheadMib() + "m");
      if (p.executor().gpus() > 0) {
        ex.resource(GPU, p.executor().gpus(), discoveryScript.orElse(""), "nvidia.com");
      }
      b.require(ex);
    }
    return b.build();
  }

  /** The policy settings local mode cannot honour (one JVM: no executors to size, allocate, buy or profile). */
  public static List<String> ignoredInLocalMode(ResourcePolicy p) {
    List<String> out = new ArrayList<>();
    out.add("executor (cores " + p.executor().cores() + ", memory " + p.executor().memoryMib() + "m"
        + (p.usesGpus() ? ", gpus " + p.executor().gpus() : "") + ")");
    if (p.task().cpus() > 1 || p.task().gpus() > 0) {
      out.add("task (cpus " + p.task().cpus() + ", gpus " + amount(p.task().gpus()) + ")");
    }
    out.add("allocation " + p.allocation().mode().name().toLowerCase(java.util.Locale.ROOT));
    out.add("market " + p.market().key());
    if (p.rapids().enabled()) {
      out.add("rapids");
    }
    return out;
  }

  static String amount(double d) {
    return d == Math.rint(d) ? String.valueOf((long) d) : String.valueOf(d);
  }

  private static String escape(String s) {
    return s.replace("&", "&amp;").replace("\"", "&quot;").replace("<", "&lt;");
  }
}
