package dev.stagecraft.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;

/** The fixture itself: a bucket S3A can use, credentials only in the configuration, and nothing left running. */
class S3ProxyTest {
  @Test
  void servesItsBucketThroughS3aAndStopsOnClose() throws Exception {
    S3Proxy proxy = S3Proxy.start();
    ProcessHandle process;
    try {
      process = proxy.process();
      assertThat(proxy.bucketUri().toString()).isEqualTo("s3a://" + proxy.bucket() + "/");
      assertThat(proxy.toString()).doesNotContain(proxy.secretKey());
      try (FileSystem fs = FileSystem.newInstance(proxy.bucketUri(), proxy.configuration())) {
        Path file = new Path(proxy.bucketUri().resolve("a/b.txt"));
        try (var out = fs.create(file, false)) {
          out.write(new byte[] {1, 2, 3});
        }
        assertThat(fs.getFileStatus(file).getLen()).isEqualTo(3);
        assertThat(fs.listStatus(new Path(proxy.bucketUri().resolve("a")))).hasSize(1);
      }
      // Jetty's startup line ("Started Server@…", or with Jetty 12's abbreviated package "Started ogsoejs.Server@…").
      assertThat(Files.readString(proxy.log())).containsPattern("Started \\S*Server@");
    } finally {
      proxy.close();
    }
    assertThat(process.isAlive()).isFalse();
    assertThat(process.descendants()).isEmpty();
    assertThatThrownBy(() -> HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(proxy.endpoint()))
        .build(), HttpResponse.BodyHandlers.discarding())).isInstanceOf(ConnectException.class);
    assertThat(proxy.log()).exists();
  }

  @Test
  void aMissingJarIsNamed() {
    String saved = System.getProperty(S3Proxy.JAR_PROPERTY);
    System.setProperty(S3Proxy.JAR_PROPERTY, "/nonexistent/s3proxy.jar");
    try {
      assertThatThrownBy(S3Proxy::start).hasMessageStartingWith(
          "Cannot start s3proxy: /nonexistent/s3proxy.jar does not exist (the module must set stagecraft.s3proxy.skip");
    } finally {
      System.setProperty(S3Proxy.JAR_PROPERTY, saved);
    }
  }
}
