package dev.stagecraft.chart;

import static java.util.Objects.requireNonNull;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.util.ArrayList;
import java.util.List;

/**
 * Line charts as PNG (loss curves, cost over time), drawn with Java2D in headless mode: no display and no extra
 * dependency. Axes are linear with "nice" tick steps; a legend names each series.
 */
public final class LineChart {
  /** One line: points (x[i], y[i]); non-finite y values are skipped. */
  public record Series(String name, double[] x, double[] y) {
    public Series {
      requireNonNull(name, "name is null");
      if (x.length != y.length) {
        throw new IllegalArgumentException("Invalid series '" + name + "': " + x.length + " x values and " + y.length
            + " y values (expected the same number)");
      }
      x = x.clone();
      y = y.clone();
    }
  }

  private static final Color[] PALETTE = {
    new Color(0x1f77b4), new Color(0xd62728), new Color(0x2ca02c), new Color(0xff7f0e), new Color(0x9467bd)
  };

  private final String title;
  private final String xLabel;
  private final String yLabel;
  private final List<Series> series = new ArrayList<>();

  public LineChart(String title, String xLabel, String yLabel) {
    this.title = title;
    this.xLabel = xLabel;
    this.yLabel = yLabel;
  }

  public LineChart add(Series s) {
    series.add(s);
    return this;
  }

  /** The chart as PNG bytes, {@code width} × {@code height} pixels. */
  public byte[] png(int width, int height) {
    return Png.render(width, height, g -> draw(g, width, height));
  }

  private void draw(Graphics2D g, int w, int h) {
    g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
    g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
    g.setColor(Color.WHITE);
    g.fillRect(0, 0, w, h);
    double[] xr = range(true);
    double[] yr = range(false);
    double[] xt = ticks(xr[0], xr[1]);
    double[] yt = ticks(yr[0], yr[1]);
    xr = new double[] {Math.min(xr[0], xt[0]), Math.max(xr[1], xt[xt.length - 1])};
    yr = new double[] {Math.min(yr[0], yt[0]), Math.max(yr[1], yt[yt.length - 1])};
    int left = 70;
    int right = w - 20;
    int top = 40;
    int bottom = h - 55;

    g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 15));
    g.setColor(Color.BLACK);
    FontMetrics fm = g.getFontMetrics();
    g.drawString(title, (w - fm.stringWidth(title)) / 2, 24);

    g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 11));
    fm = g.getFontMetrics();
    for (double t : yt) {
      int py = py(t, yr, top, bottom);
      g.setColor(new Color(0xe6e6e6));
      g.drawLine(left, py, right, py);
      g.setColor(Color.DARK_GRAY);
      String s = Png.label(t);
      g.drawString(s, left - 6 - fm.stringWidth(s), py + 4);
    }
    for (double t : xt) {
      int px = px(t, xr, left, right);
      g.setColor(new Color(0xe6e6e6));
      g.drawLine(px, top, px, bottom);
      g.setColor(Color.DARK_GRAY);
      String s = Png.label(t);
      g.drawString(s, px - fm.stringWidth(s) / 2, bottom + 16);
    }
    g.setColor(Color.BLACK);
    g.drawRect(left, top, right - left, bottom - top);
    g.drawString(xLabel, (left + right - fm.stringWidth(xLabel)) / 2, h - 18);
    Graphics2D rotated = (Graphics2D) g.create();
    rotated.rotate(-Math.PI / 2);
    rotated.drawString(yLabel, -(top + bottom + fm.stringWidth(yLabel)) / 2, 16);
    rotated.dispose();

    int legendY = top + 16;
    for (int i = 0; i < series.size(); i++) {
      Series s = series.get(i);
      Color c = PALETTE[i % PALETTE.length];
      g.setColor(c);
      g.setStroke(new BasicStroke(2f));
      int prevX = Integer.MIN_VALUE;
      int prevY = 0;
      for (int k = 0; k < s.x().length; k++) {
        if (!Double.isFinite(s.y()[k]) || !Double.isFinite(s.x()[k])) {
          prevX = Integer.MIN_VALUE;
          continue;
        }
        int px = px(s.x()[k], xr, left, right);
        int py = py(s.y()[k], yr, top, bottom);
        if (prevX != Integer.MIN_VALUE) {
          g.drawLine(prevX, prevY, px, py);
        } else if (s.x().length == 1) {
          g.fillOval(px - 3, py - 3, 6, 6);
        }
        prevX = px;
        prevY = py;
      }
      g.setStroke(new BasicStroke(1f));
      g.fillRect(right - 150, legendY - 8, 14, 4);
      g.setColor(Color.BLACK);
      g.drawString(s.name(), right - 130, legendY - 2);
      legendY += 16;
    }
  }

  private double[] range(boolean xAxis) {
    double lo = Double.POSITIVE_INFINITY;
    double hi = Double.NEGATIVE_INFINITY;
    for (Series s : series) {
      double[] v = xAxis ? s.x() : s.y();
      for (double d : v) {
        if (Double.isFinite(d)) {
          lo = Math.min(lo, d);
          hi = Math.max(hi, d);
        }
      }
    }
    if (lo > hi) {
      return new double[] {0, 1};
    }
    if (lo == hi) {
      return new double[] {lo - 1, hi + 1};
    }
    return new double[] {lo, hi};
  }

  /** About five ticks at 1, 2 or 5 × 10^k, covering [lo, hi]. */
  static double[] ticks(double lo, double hi) {
    double raw = (hi - lo) / 5;
    double mag = Math.pow(10, Math.floor(Math.log10(raw)));
    double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
    double start = Math.floor(lo / step) * step;
    double end = Math.ceil(hi / step) * step;
    int n = (int) Math.round((end - start) / step) + 1;
    double[] out = new double[n];
    for (int i = 0; i < n; i++) {
      out[i] = start + i * step;
    }
    return out;
  }

  private static int px(double x, double[] r, int left, int right) {
    return (int) Math.round(left + (x - r[0]) / (r[1] - r[0]) * (right - left));
  }

  private static int py(double y, double[] r, int top, int bottom) {
    return (int) Math.round(bottom - (y - r[0]) / (r[1] - r[0]) * (bottom - top));
  }
}
