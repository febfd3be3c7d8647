package dev.stagecraft.jobs.spec;

import dev.stagecraft.spi.StepKind;
import java.util.Collection;
import java.util.Map;
import java.util.Optional;
import java.util.ServiceLoader;
import java.util.Set;
import java.util.TreeMap;

/** The step kinds the engine knows: those on the classpath ({@link #discover()}) or a given set (tests). */
public final class StepKinds {
  private final Map<String, StepKind> byName = new TreeMap<>();

  private StepKinds(Collection<? extends StepKind> kinds) {
    for (StepKind k : kinds) {
      StepKind previous = byName.put(k.name(), k);
      if (previous != null && previous.getClass() != k.getClass()) {
        throw new IllegalStateException(
            "Two step kinds are named '" + k.name() + "': " + previous.getClass().getName() + " and "
                + k.getClass().getName());
      }
    }
  }

  /** Every kind listed in {@code META-INF/services/dev.stagecraft.spi.StepKind} on the classpath. */
  public static StepKinds discover() {
    return new StepKinds(
        ServiceLoader.load(StepKind.class, StepKinds.class.getClassLoader()).stream()
            .map(ServiceLoader.Provider::get)
            .toList());
  }

  public static StepKinds of(StepKind... kinds) {
    return new StepKinds(java.util.List.of(kinds));
  }

  /** A copy with {@code extra} added (tests add fakes to the real kinds). */
  public StepKinds with(StepKind... extra) {
    java.util.List<StepKind> all = new java.util.ArrayList<>(byName.values());
    all.addAll(java.util.List.of(extra));
    return new StepKinds(all);
  }

  public Optional<StepKind> find(String name) {
    return Optional.ofNullable(byName.get(name));
  }

  public StepKind get(String name) {
    return find(name).orElseThrow(() -> new IllegalArgumentException("unknown kind " + name));
  }

  public Set<String> names() {
    return byName.keySet();
  }
}
