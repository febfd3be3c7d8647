package dev.stagecraft.testing;

import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.testing.HostNetwork.Host;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The test bed itself: hosts reach each other and nothing else, a partition is silent (no reset), a slow link is rate
 * limited, and closing leaves no process or namespace behind. Probes are small Python programs run inside the hosts.
 */
class HostNetworkTest {
  /** Serves one connection: reads until EOF, prints the byte count, answers one byte. */
  static final String SERVER = """
      import socket, sys
      s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      s.bind((sys.argv[1], 7000)); s.listen(); print("listening", flush=True)
      c, _ = s.accept(); n = 0
      while True:
          d = c.recv(65536)
          if not d: break
          n += len(d)
      c.sendall(b"k"); print("got", n, flush=True)
      """;
  /** Sends argv[2] bytes to argv[1]:7000, then waits up to argv[3] s for the answer; prints how it went. */
  static final String CLIENT = """
      import socket, sys, time
      t = time.time()
      try:
          c = socket.create_connection((sys.argv[1], 7000), timeout=float(sys.argv[3]))
          c.sendall(b"x" * int(sys.argv[2])); c.shutdown(socket.SHUT_WR); c.recv(1)
          print("ok %.2f" % (time.time() - t))
      except socket.timeout:
          print("timeout %.2f" % (time.time() - t))
      except OSError as e:
          print("error %r" % e)
      """;

  @TempDir static Path dir;
  static HostNetwork net;
  static Host a;
  static Host b;

  @BeforeAll
  static void hosts() throws IOException {
    net = HostNetwork.create("a", "b");
    a = net.host("a");
    b = net.host("b");
    Files.writeString(dir.resolve("server.py"), SERVER);
    Files.writeString(dir.resolve("client.py"), CLIENT);
  }

  @AfterAll
  static void close() {
    if (net != null) {
      net.close();
    }
  }

  @Test
  void hostsReachEachOtherButNothingOutside() throws Exception {
    assertThat(transfer(1 << 20, 10)).startsWith("ok");
    String routes = run(net.command(a, List.of("ip", "route")));
    assertThat(routes).contains("198.18.0.0/24").doesNotContain("default");
    // This JVM's namespace (the machine's) has no address in the range: the hosts are unreachable from it.
    assertThat(run(List.of("ip", "-o", "addr"))).doesNotContain("198.18.0.");
  }

  @Test
  void aPartitionIsSilentAndHeals() throws Exception {
    net.partition(b);
    try {
      // No reset, no refusal: the connection attempt just gets no answer.
      assertThat(run(net.command(a, List.of("python3", dir.resolve("client.py").toString(), b.address(), "1000",
          "2")))).startsWith("timeout");
    } finally {
      net.heal(b);
    }
    assertThat(transfer(1000, 10)).startsWith("ok");
  }

  @Test
  void aSlowLinkIsRateLimitedUntilHealed() throws Exception {
    net.slow(b, 4_000_000);
    try {
      assertThat(net.linkQueue(b)).contains("tbf").contains("rate 4Mbit");
      // 1 MiB at 4 Mbit/s takes at least 2 s; a token bucket cannot go faster than its rate.
      String slow = transfer(1 << 20, 30);
      assertThat(slow).startsWith("ok");
      assertThat(Double.parseDouble(slow.split(" ")[1])).isGreaterThan(1.5);
    } finally {
      net.heal(b);
    }
    assertThat(net.linkQueue(b)).doesNotContain("tbf");
  }

  @Test
  void aFlappingLinkDelaysATransferButTcpCarriesItThroughUntilHealed() throws Exception {
    net.flap(b, java.time.Duration.ofMillis(600));
    try {
      // The link is down half of each period, starting with down: nothing is lost, TCP retransmits what vanished,
      // and the transfer (a few ms on a steady link) waits for at least the first down half.
      String flapping = transfer(8 << 20, 60);
      assertThat(flapping).startsWith("ok");
      assertThat(Double.parseDouble(flapping.split(" ")[1])).isGreaterThan(0.2);
    } finally {
      net.heal(b);
    }
    assertThat(run(net.command(a, List.of("ip", "route")))).contains("198.18.0.0/24");
    assertThat(transfer(1000, 10)).startsWith("ok");
  }

  @Test
  void closingKillsTheHostsProcessesAndDeletesTheNamespaces() throws Exception {
    HostNetwork other = HostNetwork.create("c");
    Host c = other.host("c");
    Process sleeper = new ProcessBuilder(other.command(c, List.of("sleep", "600"))).start();
    assertThat(sleeper.isAlive()).isTrue();
    other.close();
    assertThat(sleeper.waitFor(10, TimeUnit.SECONDS)).as("the host's process was killed").isTrue();
    assertThat(run(List.of("ip", "netns", "list"))).doesNotContain(c.namespace());
  }

  /** Starts the server in b, sends {@code bytes} from a; the client's report. */
  static String transfer(int bytes, int timeoutSeconds) throws Exception {
    Process server = new ProcessBuilder(net.command(b, List.of("python3", dir.resolve("server.py").toString(),
        b.address()))).redirectErrorStream(true).start();
    try {
      String first = new String(server.getInputStream().readNBytes("listening\n".length()), StandardCharsets.UTF_8);
      assertThat(first).isEqualTo("listening\n");
      return run(net.command(a, List.of("python3", dir.resolve("client.py").toString(), b.address(),
          String.valueOf(bytes), String.valueOf(timeoutSeconds)))).trim();
    } finally {
      server.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
    }
  }

  static String run(List<String> cmd) throws Exception {
    Process p = new ProcessBuilder(new ArrayList<>(cmd)).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    return out;
  }
}
