package dev.stagecraft.chart;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;

class LineChartTest {
  @Test
  void rendersAPngWithTheLinesInTheirColours() throws Exception {
    double[] x = {0, 1, 2, 3, 4};
    byte[] png = new LineChart("Loss", "step", "loss")
        .add(new LineChart.Series("train", x, new double[] {0.7, 0.5, 0.4, 0.35, 0.33}))
        .add(new LineChart.Series("validation", x, new double[] {0.72, 0.55, Double.NaN, 0.4, 0.38}))
        .png(640, 400);
    BufferedImage img = ImageIO.read(new ByteArrayInputStream(png));
    assertThat(img.getWidth()).isEqualTo(640);
    assertThat(img.getHeight()).isEqualTo(400);
    int blue = 0;
    int red = 0;
    for (int i = 0; i < img.getWidth(); i++) {
      for (int j = 0; j < img.getHeight(); j++) {
        int rgb = img.getRGB(i, j) & 0xffffff;
        blue += rgb == 0x1f77b4 ? 1 : 0;
        red += rgb == 0xd62728 ? 1 : 0;
      }
    }
    assertThat(blue).as("first series drawn").isGreaterThan(200);
    assertThat(red).as("second series drawn").isGreaterThan(100);
  }

  @Test
  void ticksAreNiceAndCoverTheRange() {
    assertThat(LineChart.ticks(0.33, 0.72))
        .containsExactly(new double[] {0.3, 0.4, 0.5, 0.6, 0.7, 0.8}, org.assertj.core.data.Offset.offset(1e-9));
    assertThat(LineChart.ticks(0, 1000)).startsWith(0.0, 200.0).endsWith(1000.0);
  }

  @Test
  void seriesMustHaveAsManyXAsY() {
    assertThatThrownBy(() -> new LineChart.Series("s", new double[2], new double[3]))
        .hasMessage("Invalid series 's': 2 x values and 3 y values (expected the same number)");
  }
}
