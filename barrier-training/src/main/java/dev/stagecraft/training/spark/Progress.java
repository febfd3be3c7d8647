package dev.stagecraft.training.spark;

/** The one format of training progress, from rank 0 to the driver's console. */
final class Progress {
  private Progress() {}

  static String format(int epoch, int epochs, long step, long steps, double loss, double samplesPerSecond,
      double etaSeconds) {
    return String.format("epoch %d/%d, step %d/%d, loss %.4f, %,.0f samples/s, ETA %.0fs", epoch, epochs, step, steps,
        loss, samplesPerSecond, etaSeconds);
  }
}
