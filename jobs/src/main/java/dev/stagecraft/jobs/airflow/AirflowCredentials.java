package dev.stagecraft.jobs.airflow;

import static java.util.Objects.requireNonNull;

import dev.stagecraft.spi.StagecraftException;
import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;

/**
 * A username and password for Airflow's {@code /auth/token}. Read from the environment or a file — never from the
 * command line, where other users see it in the process list. {@link #toString()} never shows the password.
 *
 * <p>Precedence: {@code STAGECRAFT_AIRFLOW_PASSWORD} (with {@code STAGECRAFT_AIRFLOW_USERNAME}, default
 * {@value #USERNAME_DEFAULT}), else a properties file ({@code username=…}, {@code password=…}) named by
 * {@code --credentials-file} or {@code STAGECRAFT_AIRFLOW_CREDENTIALS_FILE}.
 */
public final class AirflowCredentials {
  public static final String USERNAME_ENV = "STAGECRAFT_AIRFLOW_USERNAME";
  public static final String PASSWORD_ENV = "STAGECRAFT_AIRFLOW_PASSWORD";
  public static final String FILE_ENV = "STAGECRAFT_AIRFLOW_CREDENTIALS_FILE";
  public static final String USERNAME_DEFAULT = "admin";

  private final String username;
  private final String password;

  public AirflowCredentials(String username, String password) {
    this.username = requireNonNull(username, "username is null");
    this.password = requireNonNull(password, "password is null");
    if (username.isBlank()) {
      throw StagecraftException.user("Invalid Airflow username: it is empty");
    }
  }

  public String username() {
    return username;
  }

  /** The password; only for the token request body and for scrubbing messages. */
  String password() {
    return password;
  }

  /**
   * Finds the credentials in {@code env} or {@code file} (see the class comment).
   *
   * @throws StagecraftException (user) if there are none, or the file cannot be read or lacks a password
   */
  public static AirflowCredentials resolve(Map<String, String> env, Optional<Path> file) {
    String password = env.get(PASSWORD_ENV);
    if (password != null && !password.isEmpty()) {
      return new AirflowCredentials(env.getOrDefault(USERNAME_ENV, USERNAME_DEFAULT), password);
    }
    Optional<Path> f = file.or(() -> Optional.ofNullable(env.get(FILE_ENV)).filter(s -> !s.isBlank()).map(Path::of));
    if (f.isEmpty()) {
      throw StagecraftException.user("Cannot log in to Airflow: no credentials (set %s and %s, or name a file with "
          + "--credentials-file or %s holding username=… and password=… lines)", USERNAME_ENV, PASSWORD_ENV, FILE_ENV);
    }
    return fromFile(f.get(), env.getOrDefault(USERNAME_ENV, USERNAME_DEFAULT));
  }

  /** Reads {@code username=…} (optional, else {@code defaultUser}) and {@code password=…} from a properties file. */
  public static AirflowCredentials fromFile(Path file, String defaultUser) {
    Properties p = new Properties();
    try (Reader r = Files.newBufferedReader(file)) {
      p.load(r);
    } catch (IOException e) {
      throw StagecraftException.user("Cannot read Airflow credentials file %s: %s", file,
          e instanceof java.nio.file.NoSuchFileException ? "no such file" : e.getMessage());
    }
    String password = p.getProperty("password");
    if (password == null || password.isEmpty()) {
      throw StagecraftException.user("Invalid Airflow credentials file %s: no 'password=' line", file);
    }
    return new AirflowCredentials(p.getProperty("username", defaultUser).strip(), password);
  }

  /** {@code text} with every occurrence of the password replaced by {@code ***}. */
  String scrub(String text) {
    return text == null || password.isEmpty() ? text : text.replace(password, "***");
  }

  @Override
  public String toString() {
    return "AirflowCredentials[username=" + username + ", password=***]";
  }
}
