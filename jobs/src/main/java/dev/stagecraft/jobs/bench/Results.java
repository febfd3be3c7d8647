package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.stagecraft.jobs.cli.VersionProvider;

/**
 * The JSON lines benchmarks print on stdout, one object per result: {@code bench} (its name), then what the benchmark
 * measured, typically {@code params}, {@code ours}, {@code baseline} and {@code limit}. Every line names the Spark and
 * Scala it ran on ({@code spark}, {@code scala}): the benchmarks run on either Spark line ({@code --spark 3.5|4}).
 */
final class Results {
  static final ObjectMapper JSON = new ObjectMapper();

  private Results() {}

  static ObjectNode line(String bench) {
    ObjectNode n = JSON.createObjectNode();
    n.put("bench", bench);
    n.put("spark", VersionProvider.build("spark")).put("scala", VersionProvider.build("scala"));
    return n;
  }

  static void emit(ObjectNode line) {
    System.out.println(line.toString());
    System.out.flush();
  }
}
