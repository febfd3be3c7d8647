package dev.stagecraft.training.spark;

import java.util.Locale;
import java.util.Optional;
import org.apache.spark.SparkConf;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether the ring's per-run secret is protected on its way to the executors. It travels inside the barrier stage's
 * serialized task, which the driver sends over Spark's RPC and block transfer connections; those are plaintext
 * unless the application encrypts them (Spark's security guide, "Network Encryption"):
 * <ul>
 *   <li>AES-based RPC encryption, Spark 3.5 and 4: {@code spark.network.crypto.enabled=true}, which needs
 *       {@code spark.authenticate=true}; or the deprecated SASL encryption,
 *       {@code spark.authenticate.enableSaslEncryption=true}, also with {@code spark.authenticate=true};
 *   <li>TLS for RPC, Spark 4 only: {@code spark.ssl.rpc.enabled=true} (not implied by {@code spark.ssl.enabled}).
 * </ul>
 * {@code spark.io.encryption.enabled} encrypts local disk (shuffle and spill files), not the network: it does not
 * protect the task. In local mode ({@code local}, {@code local[n]}) the tasks run in the driver's JVM and the secret
 * never leaves it.
 */
final class SecretTransport {
  private static final Logger LOG = LoggerFactory.getLogger(SecretTransport.class);

  private SecretTransport() {}

  /** Logs a WARN if the secret would travel unprotected; true if it did. Called once at the train step's start. */
  static boolean warnIfExposed(SparkConf conf, String sparkVersion) {
    Optional<String> warning = warning(conf, sparkVersion);
    warning.ifPresent(LOG::warn);
    return warning.isPresent();
  }

  /** The warning for an application with {@code conf} on Spark {@code sparkVersion}, if it needs one. */
  static Optional<String> warning(SparkConf conf, String sparkVersion) {
    String master = conf.get("spark.master", "local");
    if (master.equals("local") || master.startsWith("local[")) {
      return Optional.empty();
    }
    boolean spark4 = major(sparkVersion) >= 4;
    boolean authenticated = on(conf, "spark.authenticate");
    boolean aes = authenticated
        && (on(conf, "spark.network.crypto.enabled") || on(conf, "spark.authenticate.enableSaslEncryption"));
    boolean tls = spark4 && on(conf, "spark.ssl.rpc.enabled");
    if (aes || tls) {
      return Optional.empty();
    }
    String set = "spark.authenticate=true and spark.network.crypto.enabled=true"
        + (spark4 ? " (or TLS: spark.ssl.rpc.enabled=true with its key store)" : "");
    return Optional.of("The train step's ring secret travels to the executors inside Spark's serialized task, and "
        + "this application does not encrypt Spark's RPC (" + (authenticated ? "spark.authenticate is on, but no "
        + "encryption" : "spark.authenticate is off") + "): whoever can read the network between the driver and the "
        + "executors can read the secret, join the ring and forge its frames. Set " + set + "; "
        + "spark.io.encryption.enabled covers local disk only. On a trusted network this can be ignored.");
  }

  private static boolean on(SparkConf conf, String key) {
    return conf.get(key, "false").trim().toLowerCase(Locale.ROOT).equals("true");
  }

  private static int major(String version) {
    try {
      return Integer.parseInt(version.substring(0, version.indexOf('.')));
    } catch (RuntimeException e) {
      return 3; // unknown: only what both lines honour counts
    }
  }
}
