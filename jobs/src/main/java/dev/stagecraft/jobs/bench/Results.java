package dev.stagecraft.jobs.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The JSON lines benchmarks print on stdout, one object per result: {@code bench} (its name), then what the benchmark
 * measured, typically {@code params}, {@code ours}, {@code baseline} and {@code limit}.
 */
final class Results {
  static final ObjectMapper JSON = new ObjectMapper();

  private Results() {}

  static ObjectNode line(String bench) {
    ObjectNode n = JSON.createObjectNode();
    n.put("bench", bench);
    return n;
  }

  static void emit(ObjectNode line) {
    System.out.println(line.toString());
    System.out.flush();
  }
}
