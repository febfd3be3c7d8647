package dev.stagecraft.policies.cost;

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.stagecraft.policies.ResourcePolicy.Market;
import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.InputStream;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;

/**
 * Per-hour prices of CPU cores, GiB of memory and GPUs by type, on-demand and spot, each market with its public
 * source; the built-in catalog ({@code prices.json} beside this class) also carries its date.
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

  /** One market's prices. */
  public record Rates(
      @JsonProperty("cpu_core_hour") double cpuCoreHour,
      @JsonProperty("memory_gb_hour") double memoryGbHour,
      @JsonProperty("gpu_hour") Map<String, Double> gpuHour,
      String source) {
    public Rates {
      gpuHour = Map.copyOf(gpuHour);
      requireNonNull(source, "source is null");
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
