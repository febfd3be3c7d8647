package dev.stagecraft.chart;

import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Locale;
import java.util.function.Consumer;
import javax.imageio.ImageIO;

/** What the charts share: an off-screen image encoded as PNG, and how an axis writes its numbers. */
final class Png {
  private Png() {}

  /** {@code paint} on a {@code width} × {@code height} RGB image, encoded as PNG (headless: no display needed). */
  static byte[] render(int width, int height, Consumer<Graphics2D> paint) {
    System.setProperty("java.awt.headless", "true");
    BufferedImage img = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
    Graphics2D g = img.createGraphics();
    try {
      paint.accept(g);
    } finally {
      g.dispose();
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try {
      ImageIO.write(img, "png", out);
    } catch (IOException e) {
      throw new UncheckedIOException(e); // in memory
    }
    return out.toByteArray();
  }

  /** An axis label: up to 3 decimals without trailing zeros, scientific for very large or small values. */
  static String label(double v) {
    if (Math.abs(v) >= 10_000 || (Math.abs(v) < 0.01 && v != 0)) {
      return String.format(Locale.ROOT, "%.2g", v);
    }
    String s = String.format(Locale.ROOT, "%.3f", v).replaceAll("0+$", "");
    return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
  }
}
