package dev.stagecraft.training.pipeline;

import java.io.Serializable;
import java.util.List;

/**
 * How a {@code train} step's workers share the model: {@code pipeline} stages (the layers split across workers),
 * each step's batch cut into {@code microBatches}, run in {@code schedule} order; {@code workers / pipeline} data-parallel
 * replicas of the pipeline. {@code stages} is the split the workflow gave, or null for the balanced one.
 *
 * <p>Ranks: rank {@code r} is stage {@code r % pipeline} of replica {@code r / pipeline}, so world rank 0 is the first
 * stage of the first replica (it reports progress and returns the loss curve).
 */
public record Parallelism(int pipeline, int microBatches, PipeSchedule schedule, List<List<Integer>> stages)
    implements Serializable {
  /** Data-parallel only: every worker holds the whole model. */
  public static final Parallelism DATA = new Parallelism(1, 1, PipeSchedule.ONE_F_ONE_B, null);

  public Parallelism {
    if (pipeline < 1 || microBatches < 1) {
      throw new IllegalArgumentException("pipeline and micro_batches must be at least 1");
    }
    stages = stages == null ? null : stages.stream().map(List::copyOf).toList();
  }

  public boolean pipelined() {
    return pipeline > 1;
  }

  public int replicas(int workers) {
    return workers / pipeline;
  }

  public int stageOf(int rank) {
    return rank % pipeline;
  }

  public int replicaOf(int rank) {
    return rank / pipeline;
  }

  public int rankOf(int replica, int stage) {
    return replica * pipeline + stage;
  }
}
