package dev.stagecraft.jobs.config;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.jobs.Main;
import org.junit.jupiter.api.Test;

class SettingsTest {
  @Test
  void theMainClassIsTheStagecraftCommand() {
    assertThat(Settings.MAIN_CLASS).isEqualTo(Main.class.getName());
  }
}
