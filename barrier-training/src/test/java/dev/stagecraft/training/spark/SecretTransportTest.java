package dev.stagecraft.training.spark;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.testing.LogCapture;
import dev.stagecraft.training.collective.FrameIntegrity;
import java.util.Map;
import java.util.Optional;
import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

/**
 * The train step warns once at its start when the ring's secret would travel to the executors in a task Spark does
 * not encrypt, and not when Spark encrypts its RPC; and it takes the ring's frame protection from its policy.
 */
class SecretTransportTest {
  private static final String CLUSTER = "spark://master:7077";

  @Test
  void warnsWithoutRpcEncryptionNamingWhatToSet() {
    try (LogCapture log = new LogCapture(SecretTransport.class)) {
      assertThat(SecretTransport.warnIfExposed(conf(CLUSTER, Map.of()), "3.5.5")).isTrue();
      assertThat(log.lines()).singleElement().satisfies(line -> assertThat(line)
          .startsWith("WARN The train step's ring secret travels to the executors inside Spark's serialized task")
          .contains("(spark.authenticate is off)")
          .contains("Set spark.authenticate=true and spark.network.crypto.enabled=true; ")
          .doesNotContain("spark.ssl.rpc.enabled"));
    }
  }

  @Test
  void doesNotWarnWhenSparkEncryptsItsRpc() {
    try (LogCapture log = new LogCapture(SecretTransport.class)) {
      assertThat(SecretTransport.warnIfExposed(conf(CLUSTER,
          Map.of("spark.authenticate", "true", "spark.network.crypto.enabled", "true")), "3.5.5")).isFalse();
      assertThat(SecretTransport.warnIfExposed(conf(CLUSTER,
          Map.of("spark.authenticate", "true", "spark.authenticate.enableSaslEncryption", "true")), "3.5.5"))
          .isFalse();
      assertThat(SecretTransport.warnIfExposed(conf(CLUSTER, Map.of("spark.ssl.rpc.enabled", "true")), "4.2.0"))
          .isFalse();
      assertThat(log.lines()).isEmpty();
    }
  }

  @Test
  void whatDoesNotProtectTheTaskStillWarns() {
    // Authentication alone does not encrypt; encryption needs authentication; local disk encryption is not the
    // network; TLS for RPC exists from Spark 4 on.
    assertThat(SecretTransport.warning(conf(CLUSTER, Map.of("spark.authenticate", "true")), "3.5.5").orElseThrow())
        .contains("(spark.authenticate is on, but no encryption)");
    assertThat(SecretTransport.warning(conf(CLUSTER, Map.of("spark.network.crypto.enabled", "true")), "4.2.0"))
        .get().asString().contains("or TLS: spark.ssl.rpc.enabled=true");
    assertThat(SecretTransport.warning(conf(CLUSTER, Map.of("spark.io.encryption.enabled", "true")), "3.5.5"))
        .isPresent();
    assertThat(SecretTransport.warning(conf(CLUSTER, Map.of("spark.ssl.rpc.enabled", "true")), "3.5.5"))
        .isPresent();
  }

  @Test
  void localModeKeepsTheSecretInTheDriversJvm() {
    assertThat(SecretTransport.warning(conf("local[2]", Map.of()), "3.5.5")).isEmpty();
    assertThat(SecretTransport.warning(conf("local-cluster[2,1,1024]", Map.of()), "3.5.5")).isPresent();
  }

  @Test
  void theFrameProtectionComesFromThePolicyElseTheDefault() {
    assertThat(TrainStep.integrity(Optional.empty(), "fit")).isEqualTo(FrameIntegrity.DEFAULT);
    assertThat(TrainStep.integrity(Optional.of("mac"), "fit")).isEqualTo(FrameIntegrity.MAC);
    assertThat(TrainStep.integrity(Optional.of("none"), "fit")).isEqualTo(FrameIntegrity.NONE);
  }

  private static SparkConf conf(String master, Map<String, String> settings) {
    SparkConf conf = new SparkConf(false).setMaster(master);
    settings.forEach(conf::set);
    return conf;
  }
}
