package dev.stagecraft.policies.cost.spark;

import dev.stagecraft.policies.Policies;
import dev.stagecraft.policies.ResourcePolicy;
import dev.stagecraft.policies.cost.Usage;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.apache.spark.resource.ExecutorResourceRequest;
import org.apache.spark.resource.ResourceProfile;
import org.apache.spark.resource.TaskResourceRequest;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerExecutorAdded;
import org.apache.spark.scheduler.SparkListenerExecutorRemoved;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerResourceProfileAdded;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.TaskInfo;

/**
 * Records, for one run, every executor's lifetime with its resource profile and resources, and every task's time with
 * the step it belongs to (job group {@code stagecraft/RUN/STEP}). Events arrive on Spark's listener bus thread; the
 * accessors may be called from any thread.
 *
 * <p>Executors that already exist when the run starts (local mode's driver, a static application's executors) are
 * metered from that moment: their earlier life belongs to no run.
 *
 * <p>Outside local mode the driver is billed too, as its own item: its cores ({@code spark.driver.cores}), memory with
 * overhead ({@code spark.driver.memory} + {@code spark.driver.memoryOverhead}) and GPUs, in client and cluster mode
 * alike (a client-mode driver needs a machine as much as a cluster-mode one). The first run metered in an application
 * pays for the driver from the application's start (the SparkContext's, before which there is no application to bill
 * for), so a spark-submitted run pays for its driver's whole life up to the run's end; a later run in the same
 * application (a notebook session's next run) from its own start, like the executors. In local mode the driver is the
 * one executor and billed as such.
 */
public final class CostListener extends SparkListener {

  private final String groupPrefix;
  private final SparkConf conf;
  private final ResourcePolicy basePolicy;
  private final Map<Integer, ResourceProfile> profiles = new ConcurrentHashMap<>();
  private final Map<Integer, ResourcePolicy> profilePolicies = new ConcurrentHashMap<>();
  private final Map<Integer, String> stageSteps = new ConcurrentHashMap<>();
  private final Map<Integer, Integer> stageProfiles = new ConcurrentHashMap<>();
  private final Map<String, Exec> executors = new ConcurrentHashMap<>();
  private final List<Usage.Task> tasks = java.util.Collections.synchronizedList(new ArrayList<>());
  private final List<Usage.Window> windows = java.util.Collections.synchronizedList(new ArrayList<>());
  private final Map<String, Long> openWindows = new ConcurrentHashMap<>();
  private final long start;
  private volatile long end = -1;
  /** Null in local mode, where the driver is the one executor. */
  private final Usage.Driver driver;

  /** Applications whose first metered run has billed the driver from the application's start. */
  private static final Set<String> BILLED_FROM_START = ConcurrentHashMap.newKeySet();

  private static final class Exec {
    final String id;
    final int profile;
    final int cores;
    final int gpus;
    final long start;
    volatile long end = Long.MAX_VALUE;

    Exec(String id, int profile, int cores, int gpus, long start) {
      this.id = id;
      this.profile = profile;
      this.cores = cores;
      this.gpus = gpus;
      this.start = start;
    }
  }

  /**
   * @param runId the run whose job groups ({@code stagecraft/RUN/STEP}) are metered
   * @param basePolicy the policy of the application's default profile (market and GPU type of its executors)
   */
  public CostListener(SparkContext sc, String runId, ResourcePolicy basePolicy) {
    this.groupPrefix = "stagecraft/" + runId + "/";
    this.conf = sc.getConf();
    this.basePolicy = basePolicy;
    this.start = System.currentTimeMillis();
    if (sc.isLocal()) {
      // Local mode's one executor is the driver; its SparkListenerExecutorAdded was posted at start-up.
      executors.put("driver", new Exec("driver", 0, sc.defaultParallelism(), 0, start));
      driver = null;
    } else {
      long from = BILLED_FROM_START.add(sc.applicationId()) ? Math.min(sc.startTime(), start) : start;
      driver = new Usage.Driver("driver", conf.getInt("spark.driver.cores", 1), driverMemoryMib(conf),
          conf.getInt("spark.driver.resource.gpu.amount", 0), basePolicy.executor().gpuType(), from, Long.MAX_VALUE);
      scala.collection.Iterator<String> ids = sc.getExecutorIds().iterator();
      while (ids.hasNext()) {
        String id = ids.next();
        executors.put(id, new Exec(id, 0, conf.getInt("spark.executor.cores", 1),
            conf.getInt("spark.executor.resource.gpu.amount", 0), start));
      }
    }
  }

  /** Makes the executors of profile {@code id} priced by {@code policy} (its market and GPU type). */
  public void profilePolicy(int id, ResourcePolicy policy) {
    profilePolicies.put(id, policy);
  }

  public void stepStarted(String step) {
    openWindows.put(step, System.currentTimeMillis());
  }

  public void stepFinished(String step) {
    Long s = openWindows.remove(step);
    if (s != null) {
      windows.add(new Usage.Window(step, s, System.currentTimeMillis()));
    }
  }

  @Override
  public void onResourceProfileAdded(SparkListenerResourceProfileAdded event) {
    profiles.put(event.resourceProfile().id(), event.resourceProfile());
  }

  @Override
  public void onJobStart(SparkListenerJobStart job) {
    String group = job.properties() == null ? null : job.properties().getProperty("spark.jobGroup.id");
    if (group != null && group.startsWith(groupPrefix)) {
      String step = group.substring(groupPrefix.length());
      scala.collection.Iterator<Object> it = job.stageIds().iterator();
      while (it.hasNext()) {
        stageSteps.put((Integer) it.next(), step);
      }
    }
  }

  @Override
  public void onStageSubmitted(SparkListenerStageSubmitted stage) {
    stageProfiles.put(stage.stageInfo().stageId(), stage.stageInfo().resourceProfileId());
  }

  @Override
  public void onExecutorAdded(SparkListenerExecutorAdded event) {
    int gpus = event.executorInfo().resourcesInfo().get("gpu").map(r -> r.addresses().length).getOrElse(() -> 0);
    executors.put(event.executorId(), new Exec(event.executorId(), event.executorInfo().resourceProfileId(),
        event.executorInfo().totalCores(), gpus, event.time()));
  }

  @Override
  public void onExecutorRemoved(SparkListenerExecutorRemoved event) {
    Exec e = executors.get(event.executorId());
    if (e != null) {
      e.end = event.time();
    }
  }

  @Override
  public void onTaskEnd(SparkListenerTaskEnd event) {
    String step = stageSteps.get(event.stageId());
    if (step == null) {
      return; // not this run's
    }
    TaskInfo info = event.taskInfo();
    int profile = stageProfiles.getOrDefault(event.stageId(), 0);
    tasks.add(new Usage.Task(info.executorId(), step, event.stageId(), profile, info.launchTime(),
        info.finishTime() > 0 ? info.finishTime() : System.currentTimeMillis(), taskGpus(profile)));
  }

  /** Stops metering: executors still alive and steps still open end now. */
  public void stop() {
    end = System.currentTimeMillis();
    for (String step : List.copyOf(openWindows.keySet())) {
      stepFinished(step);
    }
  }

  /** What was recorded between construction and {@link #stop}. */
  public Usage usage() {
    long until = end < 0 ? System.currentTimeMillis() : end;
    List<Usage.Executor> out = new ArrayList<>();
    for (Exec e : executors.values()) {
      ResourcePolicy policy = profilePolicies.getOrDefault(e.profile, basePolicy);
      out.add(new Usage.Executor(e.id, e.profile, e.cores, memoryMib(e.profile), e.gpus,
          policy.executor().gpuType(), policy.market(), e.start, Math.min(e.end, until)));
    }
    out.sort(java.util.Comparator.comparingLong(Usage.Executor::start).thenComparing(Usage.Executor::id));
    List<Usage.Driver> drivers = Optional.ofNullable(driver).map(d -> new Usage.Driver(d.id(), d.cores(),
        d.memoryMib(), d.gpus(), d.gpuType(), d.start(), until)).stream().toList();
    return new Usage(start, until, out, List.copyOf(tasks), List.copyOf(windows), drivers);
  }

  /** The driver's memory and overhead, with Spark's defaults (1g; overhead 10 % of it, at least 384m). */
  static long driverMemoryMib(SparkConf conf) {
    long mem = conf.getSizeAsMb("spark.driver.memory", "1g");
    double factor = conf.getDouble("spark.driver.memoryOverheadFactor", 0.10);
    return mem + conf.getSizeAsMb("spark.driver.memoryOverhead", Math.max(384, (long) (mem * factor)) + "m");
  }

  /** Executor memory + overhead of a profile, from its requests or (default profile) the application's settings. */
  private long memoryMib(int profile) {
    if (profile == 0 && executors.containsKey("driver")) {
      return conf.getSizeAsMb("spark.driver.memory", "1g");
    }
    ResourceProfile rp = profiles.get(profile);
    if (rp != null && profile != 0) {
      Map<String, ExecutorResourceRequest> req = rp.executorResourcesJMap();
      long mem = req.containsKey("memory") ? req.get("memory").amount() : conf.getSizeAsMb("spark.executor.memory",
          "1g");
      long overhead = req.containsKey("memoryOverhead") ? req.get("memoryOverhead").amount() : 384;
      return mem + overhead;
    }
    long mem = conf.getSizeAsMb("spark.executor.memory", "1g");
    return mem + conf.getSizeAsMb("spark.executor.memoryOverhead", Math.max(384, mem / 10) + "m");
  }

  private double taskGpus(int profile) {
    ResourceProfile rp = profiles.get(profile);
    if (rp != null && profile != 0) {
      TaskResourceRequest gpu = rp.taskResourcesJMap().get("gpu");
      return gpu == null ? 0 : gpu.amount();
    }
    return conf.getDouble("spark.task.resource.gpu.amount", 0);
  }

  /** The base policy when a workflow names none: local mode's {@code local}, else {@code cpu-etl}. */
  public static ResourcePolicy defaultBase(SparkContext sc) {
    return Policies.BUILT_IN.get(sc.isLocal() ? "local" : "cpu-etl");
  }

}
