package dev.stagecraft.inference.runtime;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.util.Utils;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class DjlEnvironmentTest {

  @Test
  void engineLoadsOfflineFromTheBundledNativeJar() {
    DjlEnvironment.configure();
    assertThat(DjlEnvironment.bundledPyTorchVersion()).isEqualTo("2.7.1");
    assertThat(DjlEnvironment.pytorch().getVersion()).isEqualTo("2.7.1");
    // As DJL itself sees the settings.
    assertThat(Utils.isOfflineMode()).isTrue();
    Path engineCache = Utils.getEngineCacheDir();
    assertThat(engineCache.toString()).isEqualTo(DjlEnvironment.setting(DjlEnvironment.ENGINE_CACHE_DIR));
    assertThat(Files.isDirectory(engineCache.resolve("pytorch"))).as("libtorch extracted under %s", engineCache).isTrue();
    assertThat(DjlEnvironment.setting(DjlEnvironment.PYTORCH_VERSION)).isEqualTo("2.7.1");
    assertThat(DjlEnvironment.setting(DjlEnvironment.PYTORCH_FLAVOR)).isEqualTo("cpu");
  }

  @Test
  void theCacheIsUnderTheUsersHomeUnlessStagecraftCacheMovesIt() {
    Path home = Path.of(System.getProperty("user.home"), ".cache", "stagecraft");
    assertThat(DjlEnvironment.stagecraftCache(null)).isEqualTo(home);
    assertThat(DjlEnvironment.stagecraftCache(" ")).isEqualTo(home);
    assertThat(DjlEnvironment.stagecraftCache("/srv/cache")).isEqualTo(Path.of("/srv/cache"));
    assertThat(DjlEnvironment.defaultCacheDir())
        .isEqualTo(DjlEnvironment.stagecraftCache(System.getenv("STAGECRAFT_CACHE")).resolve("djl"));
  }
}
