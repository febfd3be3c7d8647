package dev.stagecraft.jobs.kinds;

import static dev.stagecraft.spi.FieldSpec.Type.STRING;

import dev.stagecraft.inference.rapids.GpuPlans;
import dev.stagecraft.inference.spark.SqlFunctions;
import dev.stagecraft.jobs.spec.Template;
import dev.stagecraft.spi.FieldSpec;
import dev.stagecraft.spi.SizingTraits;
import dev.stagecraft.spi.StagecraftException;
import dev.stagecraft.spi.StepConfig;
import dev.stagecraft.spi.StepContext;
import dev.stagecraft.spi.StepKind;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.apache.spark.sql.AnalysisException;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.catalyst.analysis.UnresolvedRelation;
import org.apache.spark.sql.catalyst.parser.CatalystSqlParser$;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import scala.collection.Iterator;

/**
 * {@code sql}: one Spark SQL query whose result is the step's table output. Earlier steps' table outputs are views
 * named by their step ids; a step named in {@code FROM}/{@code JOIN} becomes a dependency even without {@code after}.
 * Besides Spark's functions a query may call {@code vector_to_array(v)} ({@link SqlFunctions}).
 */
public final class SqlStep implements StepKind {
  /** Stands in for {@code ${…}} references while the query is parsed before run time. */
  private static final List<String> PLACEHOLDERS = List.of("stagecraft_ref", "0");

  @Override
  public String name() {
    return "sql";
  }

  /** Right-sizing: Spark re-runs a lost task and the step's output is the same. */
  @Override
  public SizingTraits sizing(StepConfig step, Map<String, Double> lastMetrics) {
    return SizingTraits.IDEMPOTENT;
  }

  @Override
  public List<FieldSpec> fields() {
    return List.of(FieldSpec.required("sql", STRING, "a Spark SQL query"));
  }

  @Override
  public List<String> outputs() {
    return List.of("output");
  }

  @Override
  public void validate(StepConfig step) {
    String sql = step.requireString("sql");
    if (parse(sql).isEmpty() && !sql.contains("${")) {
      try {
        CatalystSqlParser$.MODULE$.parsePlan(sql);
      } catch (Exception e) { // ParseException: checked in Java's eyes, never declared by Scala
        throw step.invalid("sql", "cannot parse the query: " + StagecraftException.firstLine(e.getMessage())
            + " (expected a Spark SQL query)");
      }
    }
  }

  @Override
  public Set<String> implicitInputs(StepConfig step, Set<String> stepIds) {
    Set<String> out = new LinkedHashSet<>();
    parse(step.string("sql").orElse("")).ifPresent(plan -> collectTables(plan, stepIds, out));
    return out;
  }

  @Override
  public void run(StepContext ctx) {
    StepConfig step = ctx.step();
    Dataset<Row> result;
    SqlFunctions.register(ctx.spark());
    try {
      result = ctx.spark().sql(step.requireString("sql"));
    } catch (Exception e) { // Scala's AnalysisException is checked in Java's eyes but never declared
      if (e instanceof AnalysisException) {
        throw step.invalid("sql", StagecraftException.firstLine(e.getMessage()));
      }
      throw (RuntimeException) e;
    }
    GpuPlans.record(step.id(), result);
    ctx.writeTable("output", result);
  }

  /** The parsed query with references replaced by placeholders, if some placeholder makes it parse. */
  private static Optional<LogicalPlan> parse(String sql) {
    for (String p : PLACEHOLDERS) {
      try {
        return Optional.of(CatalystSqlParser$.MODULE$.parsePlan(Template.substitute(sql, name -> p)));
      } catch (Exception e) { // ParseException: checked in Java's eyes, never declared by Scala
        // try the next placeholder
      }
      if (!sql.contains("${")) {
        break;
      }
    }
    return Optional.empty();
  }

  /** One-part table names in the plan (and its subqueries and CTEs) that are step ids. */
  private static void collectTables(LogicalPlan plan, Set<String> stepIds, Set<String> out) {
    if (plan instanceof UnresolvedRelation r && r.multipartIdentifier().size() == 1) {
      String name = r.multipartIdentifier().head();
      for (String id : stepIds) {
        if (id.equalsIgnoreCase(name)) {
          out.add(id);
        }
      }
    }
    Iterator<LogicalPlan> children = plan.children().iterator();
    while (children.hasNext()) {
      collectTables(children.next(), stepIds, out);
    }
    Iterator<LogicalPlan> subqueries = plan.subqueries().iterator();
    while (subqueries.hasNext()) {
      collectTables(subqueries.next(), stepIds, out);
    }
    plan.innerChildren().foreach(c -> {
      if (c instanceof LogicalPlan lp) {
        collectTables(lp, stepIds, out);
      }
      return null;
    });
  }
}
