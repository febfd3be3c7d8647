package dev.stagecraft.chart;

import static java.util.Objects.requireNonNull;

import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.util.ArrayList;
import java.util.List;

/**
 * Stacked bar charts as PNG (cost per step, busy vs idle), drawn with Java2D in headless mode like {@link LineChart}.
 * Each bar is a category; each segment one of the named stacks, in order from the bottom.
 */
public final class BarChart {
  /** One category's bar: a value per stack. */
  public record Bar(String label, double[] values) {
    public Bar {
      requireNonNull(label, "label is null");
      values = values.clone();
    }
  }

  private static final Color[] PALETTE = {new Color(0x1f77b4), new Color(0xaec7e8), new Color(0xd62728),
      new Color(0xff9896), new Color(0x2ca02c), new Color(0x98df8a)};

  private final String title;
  private final String yLabel;
  private final List<String> stacks;
  private final List<Bar> bars = new ArrayList<>();

  public BarChart(String title, String yLabel, List<String> stacks) {
    this.title = title;
    this.yLabel = yLabel;
    this.stacks = List.copyOf(stacks);
  }

  public BarChart add(Bar bar) {
    if (bar.values().length != stacks.size()) {
      throw new IllegalArgumentException("Invalid bar '" + bar.label() + "': " + bar.values().length
          + " values (expected one per stack: " + stacks.size() + ")");
    }
    bars.add(bar);
    return this;
  }

  public byte[] png(int width, int height) {
    return Png.render(width, height, g -> draw(g, width, height));
  }

  private void draw(Graphics2D g, int width, int height) {
    g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
    g.setColor(Color.WHITE);
    g.fillRect(0, 0, width, height);
    g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
    FontMetrics fm = g.getFontMetrics();
    int left = 80;
    int right = 20;
    int top = 40;
    int bottom = 70;
    int plotW = width - left - right;
    int plotH = height - top - bottom;
    double max = 0;
    for (Bar b : bars) {
      double sum = 0;
      for (double v : b.values()) {
        sum += Math.max(0, v);
      }
      max = Math.max(max, sum);
    }
    double step = niceStep(max > 0 ? max : 1);
    double topValue = Math.ceil((max > 0 ? max : 1) / step) * step;
    g.setColor(Color.BLACK);
    g.drawString(title, left, 20);
    g.setColor(new Color(0xdddddd));
    for (double t = 0; t <= topValue + step / 2; t += step) {
      int y = top + plotH - (int) Math.round(t / topValue * plotH);
      g.setColor(new Color(0xdddddd));
      g.drawLine(left, y, left + plotW, y);
      g.setColor(Color.DARK_GRAY);
      String label = Png.label(t);
      g.drawString(label, left - 6 - fm.stringWidth(label), y + 4);
    }
    g.drawString(yLabel, 6, top - 8);
    int n = Math.max(1, bars.size());
    int slot = plotW / n;
    int barW = Math.max(4, (int) (slot * 0.6));
    for (int i = 0; i < bars.size(); i++) {
      Bar b = bars.get(i);
      int x = left + i * slot + (slot - barW) / 2;
      double acc = 0;
      for (int s = 0; s < stacks.size(); s++) {
        double v = Math.max(0, b.values()[s]);
        int y0 = top + plotH - (int) Math.round(acc / topValue * plotH);
        int y1 = top + plotH - (int) Math.round((acc + v) / topValue * plotH);
        g.setColor(PALETTE[s % PALETTE.length]);
        g.fillRect(x, y1, barW, Math.max(0, y0 - y1));
        acc += v;
      }
      g.setColor(Color.BLACK);
      String label = b.label().length() > 18 ? b.label().substring(0, 17) + "…" : b.label();
      g.drawString(label, left + i * slot + (slot - fm.stringWidth(label)) / 2, top + plotH + 16);
    }
    g.setColor(Color.BLACK);
    g.drawLine(left, top + plotH, left + plotW, top + plotH);
    int lx = left;
    for (int s = 0; s < stacks.size(); s++) {
      g.setColor(PALETTE[s % PALETTE.length]);
      g.fillRect(lx, height - 24, 12, 12);
      g.setColor(Color.BLACK);
      g.drawString(stacks.get(s), lx + 16, height - 14);
      lx += 24 + fm.stringWidth(stacks.get(s));
    }
  }

  static double niceStep(double range) {
    double raw = range / 5;
    double mag = Math.pow(10, Math.floor(Math.log10(raw)));
    double f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }
}
