package dev.stagecraft.training.spark;

import java.io.Serializable;
import java.util.Iterator;
import java.util.List;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.rdd.RDD;
import scala.collection.JavaConverters;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;
import scala.runtime.AbstractFunction1;

/**
 * Runs a function on every partition of an RDD as one Spark barrier stage: all tasks are launched together (gang
 * scheduling) or none is, and a failed task fails them all. The barrier API exists only in Scala
 * ({@code RDD.barrier().mapPartitions}); this is its Java face.
 */
public final class BarrierStage {
  private BarrierStage() {}

  /** A serializable function from a partition's rows to its results. */
  @FunctionalInterface
  public interface PartitionFunction<T, R> extends Serializable {
    Iterator<R> apply(Iterator<T> rows) throws Exception;
  }

  /**
   * Runs {@code fn} on every partition at once and collects what the tasks return.
   *
   * <p>This is a barrier <em>result</em> stage: a failed task aborts the job (Spark cannot retry a barrier result
   * stage). Callers that need Spark to retry the whole stage add a shuffle after it, which makes it a barrier
   * shuffle-map stage: Spark retries such a stage whole.
   */
  @SuppressWarnings("unchecked")
  public static <T, R> List<R> collect(JavaRDD<T> rdd, PartitionFunction<T, R> fn) {
    ClassTag<R> tag = (ClassTag<R>) ClassTag$.MODULE$.apply(Object.class);
    RDD<R> out = rdd.rdd().barrier().mapPartitions(new ScalaPartitionFunction<>(fn), false, tag);
    return new JavaRDD<>(out, tag).collect();
  }

  /** Adapts a {@link PartitionFunction} to the Scala function the barrier API takes. */
  private static final class ScalaPartitionFunction<T, R>
      extends AbstractFunction1<scala.collection.Iterator<T>, scala.collection.Iterator<R>> implements Serializable {
    private static final long serialVersionUID = 1L;
    private final PartitionFunction<T, R> fn;

    ScalaPartitionFunction(PartitionFunction<T, R> fn) {
      this.fn = fn;
    }

    @Override
    public scala.collection.Iterator<R> apply(scala.collection.Iterator<T> rows) {
      try {
        return JavaConverters.asScalaIterator(fn.apply(JavaConverters.asJavaIterator(rows)));
      } catch (RuntimeException e) {
        throw e;
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    }
  }
}
