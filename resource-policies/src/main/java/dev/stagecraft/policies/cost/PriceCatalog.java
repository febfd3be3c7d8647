package dev.stagecraft.policies.cost;

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;

/**
 * Per-hour prices of CPU cores, GiB of memory and GPUs by type, on-demand and spot. Each market names, per group of
 * figures, the public page they come from and the date of the copy they were read from, and, per figure, whether it
 * was read from it ({@code status}: {@code "read ..."} or {@code "not re-read: why"}); the built-in catalog
 * ({@code prices.json} beside this class) also carries the date it was written.
 */
@JsonIgnoreProperties(ignoreUnknown = false)
public record PriceCatalog(
    String name,
    @JsonProperty("as_of") String asOf,
    String currency,
    String note,
    @JsonProperty("on_demand") Rates onDemand,
    Rates spot,
    @JsonProperty("default_gpu") String defaultGpu) {

  public PriceCatalog {
    requireNonNull(onDemand, "on_demand is null");
    requireNonNull(spot, "spot is null");
    requireNonNull(defaultGpu, "default_gpu is null");
  }

  /**
   * One market's prices, where they come from ({@code sources}: every figure in exactly one group) and whether each
   * was read there ({@code status}: every figure, as {@code cpu_core_hour}, {@code memory_gb_hour} or
   * {@code gpu_hour.TYPE}).
   */
  public record Rates(
      @JsonProperty("cpu_core_hour") double cpuCoreHour,
      @JsonProperty("memory_gb_hour") double memoryGbHour,
      @JsonProperty("gpu_hour") Map<String, Double> gpuHour,
      List<Source> sources,
      Map<String, String> status) {
    public Rates {
      gpuHour = Map.copyOf(gpuHour);
      sources = List.copyOf(requireNonNull(sources, "sources is null"));
      status = Map.copyOf(requireNonNull(status, "status is null"));
      Set<String> figures = new TreeSet<>(List.of("cpu_core_hour", "memory_gb_hour"));
      gpuHour.keySet().forEach(t -> figures.add("gpu_hour." + t));
      List<String> grouped = sources.stream().flatMap(g -> g.figures().stream()).toList();
      if (grouped.size() != figures.size() || !figures.equals(new TreeSet<>(grouped))) {
        throw new IllegalArgumentException("sources must name every figure once (" + String.join(", ", figures)
            + "), not " + grouped);
      }
      if (!figures.equals(new TreeSet<>(status.keySet()))) {
        throw new IllegalArgumentException("status must give every figure (" + String.join(", ", figures) + "), not "
            + new TreeSet<>(status.keySet()));
      }
      status.forEach((figure, st) -> {
        if (!st.startsWith("read ") && !st.startsWith(NOT_REREAD)) {
          throw new IllegalArgumentException("status of " + figure + " must start 'read ' or '" + NOT_REREAD
              + "', not '" + st + "'");
        }
      });
    }
  }

  /** How a figure's status says it was not read from its source, followed by why. */
  public static final String NOT_REREAD = "not re-read: ";

  /**
   * A group of figures from one public page: its address and the date of the copy they were read from (or, if the
   * copy had none, what is known of it).
   */
  public record Source(List<String> figures, String url, @JsonProperty("copy_date") String copyDate) {
    public Source {
      figures = List.copyOf(requireNonNull(figures, "figures is null"));
      requireNonNull(url, "url is null");
      requireNonNull(copyDate, "copy_date is null");
    }
  }

  /** The catalog shipped with Stagecraft. */
  public static PriceCatalog builtIn() {
    try (InputStream in = PriceCatalog.class.getResourceAsStream("prices.json")) {
      return read(in, "built-in prices.json");
    } catch (IOException e) {
      throw new IllegalStateException("Cannot read the built-in price catalog", e);
    }
  }

  /** Reads a catalog in the built-in one's JSON shape; {@code source} names it in messages. */
  public static PriceCatalog read(InputStream in, String source) {
    try {
      return new ObjectMapper().readValue(in, PriceCatalog.class);
    } catch (IOException | RuntimeException e) {
      throw StagecraftException.user("Invalid price catalog %s: %s", source,
          StagecraftException.firstLine(e.getMessage()));
    }
  }

  public Rates rates(Market market) {
    return market == Market.SPOT ? spot : onDemand;
  }

  /** Price of one executor-hour of this shape. */
  public double hourly(int cores, long memoryMib, int gpus, Optional<String> gpuType, Market market) {
    Rates r = rates(market);
    double price = cores * r.cpuCoreHour() + memoryMib / 1024.0 * r.memoryGbHour();
    if (gpus > 0) {
      String type = gpuType.orElse(defaultGpu);
      Double g = r.gpuHour().get(type);
      if (g == null) {
        throw StagecraftException.user("Invalid gpu_type '%s': the price catalog (%s) has no price for it (expected "
            + "one of: %s)", type, name, String.join(", ", new TreeSet<>(r.gpuHour().keySet())));
      }
      price += gpus * g;
    }
    return price;
  }
}
