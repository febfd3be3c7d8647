package dev.stagecraft.policies.sched;

import java.util.List;
import java.util.SplittableRandom;

/**
 * Spot capacity in one or more zones, each replaying its {@link SpotTrace} from an offset. With a seed the offsets are
 * drawn at random (so one trace gives many plausible weeks); {@link #aligned} starts every trace at its beginning.
 */
public final class SpotMarket {
  private final List<SpotTrace> zones;
  private final double[] offsets;

  private SpotMarket(List<SpotTrace> zones, double[] offsets) {
    this.zones = List.copyOf(zones);
    this.offsets = offsets.clone();
  }

  public static SpotMarket seeded(List<SpotTrace> zones, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    double[] o = new double[zones.size()];
    for (int i = 0; i < o.length; i++) {
      o[i] = Math.floor(random.nextDouble() * zones.get(i).data().length) * zones.get(i).gapSeconds();
    }
    return new SpotMarket(zones, o);
  }

  public static SpotMarket aligned(List<SpotTrace> zones) {
    return new SpotMarket(zones, new double[zones.size()]);
  }

  public int zoneCount() {
    return zones.size();
  }

  public SpotTrace zone(int i) {
    return zones.get(i);
  }

  public double offset(int i) {
    return offsets[i];
  }

  public boolean available(int zone, double t) {
    return zones.get(zone).available(t, offsets[zone]);
  }

  /** The zone with capacity at {@code t} whose capacity lasts longest on average; -1 if none has any. */
  public int bestAvailable(double t) {
    int best = -1;
    for (int z = 0; z < zones.size(); z++) {
      if (available(z, t) && (best < 0
          || zones.get(z).meanSecondsBetweenPreemptions() > zones.get(best).meanSecondsBetweenPreemptions())) {
        best = z;
      }
    }
    return best;
  }
}
