package dev.stagecraft.jobs.notebook;

import static java.util.Objects.requireNonNull;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;

/**
 * A small table of values for a notebook cell: {@link #html()} for {@code display(table.html(), "text/html")},
 * {@link #toString()} as aligned text. Values are kept as they are (numbers stay numbers) for assertions.
 *
 * @param columns the column names
 * @param rows one list of values per row, each as long as {@code columns}
 */
public record Table(List<String> columns, List<List<Object>> rows) {
  public Table {
    columns = List.copyOf(columns);
    List<List<Object>> copy = new ArrayList<>();
    for (List<Object> r : requireNonNull(rows, "rows is null")) {
      if (r.size() != columns.size()) {
        throw new IllegalArgumentException("Invalid row " + r + ": " + r.size() + " values (expected one per column: "
            + columns + ")");
      }
      copy.add(Collections.unmodifiableList(new ArrayList<>(r))); // values may be null
    }
    rows = Collections.unmodifiableList(copy);
  }

  /** The first {@code limit} rows of a DataFrame (vectors and arrays shown as text). */
  public static Table of(Dataset<Row> df, int limit) {
    if (limit < 1) {
      throw new IllegalArgumentException("Invalid limit: " + limit + " (expected at least 1)");
    }
    List<String> cols = List.of(df.columns());
    List<List<Object>> out = new ArrayList<>();
    for (Row r : df.takeAsList(limit)) {
      List<Object> values = new ArrayList<>();
      for (int i = 0; i < cols.size(); i++) {
        Object v = r.get(i);
        values.add(v == null || v instanceof Number || v instanceof String || v instanceof Boolean ? v
            : v instanceof scala.collection.Seq<?> seq ? seq.mkString("[", ", ", "]")
            : v.toString());
      }
      out.add(values);
    }
    return new Table(cols, out);
  }

  public int size() {
    return rows.size();
  }

  /** The values of one column, in row order. */
  public List<Object> column(String name) {
    int i = columns.indexOf(name);
    if (i < 0) {
      throw new IllegalArgumentException("Invalid column '" + name + "' (expected one of: " + columns + ")");
    }
    return rows.stream().map(r -> r.get(i)).toList();
  }

  /** The table as an HTML {@code <table>}, every value escaped. */
  public String html() {
    StringBuilder b = new StringBuilder("<table class=\"stagecraft\">\n<thead><tr>");
    for (String c : columns) {
      b.append("<th>").append(escape(c)).append("</th>");
    }
    b.append("</tr></thead>\n<tbody>\n");
    for (List<Object> r : rows) {
      b.append("<tr>");
      for (Object v : r) {
        boolean number = v instanceof Number;
        b.append(number ? "<td style=\"text-align:right\">" : "<td>").append(escape(format(v))).append("</td>");
      }
      b.append("</tr>\n");
    }
    return b.append("</tbody>\n</table>").toString();
  }

  @Override
  public String toString() {
    List<String[]> lines = new ArrayList<>();
    lines.add(columns.toArray(String[]::new));
    for (List<Object> r : rows) {
      lines.add(r.stream().map(Table::format).toArray(String[]::new));
    }
    int[] width = new int[columns.size()];
    for (String[] l : lines) {
      for (int i = 0; i < l.length; i++) {
        width[i] = Math.max(width[i], l[i].length());
      }
    }
    StringBuilder b = new StringBuilder();
    for (String[] l : lines) {
      StringBuilder line = new StringBuilder();
      for (int i = 0; i < l.length; i++) {
        line.append(String.format("%-" + width[i] + "s  ", l[i]));
      }
      b.append(line.toString().stripTrailing()).append('\n');
    }
    return b.toString();
  }

  static String format(Object v) {
    if (v == null) {
      return "";
    }
    if (v instanceof Double || v instanceof Float) {
      double d = ((Number) v).doubleValue();
      return d == Math.rint(d) && Math.abs(d) < 1e15 ? String.format(Locale.ROOT, "%.0f", d)
          : String.format(Locale.ROOT, "%.4g", d);
    }
    return v.toString();
  }

  static String escape(String s) {
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
  }
}
