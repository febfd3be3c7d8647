package dev.stagecraft.training.collective;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class ValueTypesTest {
  private static final List<PeerAddress> THREE = List.of(
      PeerAddress.parse("a:1"), PeerAddress.parse("b:2"), PeerAddress.parse("c:3"));

  @Test
  void parsesAndPrintsPeerAddresses() {
    assertThat(PeerAddress.parse("worker-1.example.com:40123"))
        .isEqualTo(new PeerAddress("worker-1.example.com", 40123));
    assertThat(PeerAddress.parse("[::1]:9000")).isEqualTo(new PeerAddress("::1", 9000));
    assertThat(new PeerAddress("::1", 9000)).hasToString("[::1]:9000");
    assertThat(new PeerAddress("10.0.0.7", 1)).hasToString("10.0.0.7:1");
  }

  @Test
  void rejectsBadPeerAddresses() {
    assertThatThrownBy(() -> PeerAddress.parse("no-port")).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid peer address: 'no-port' (expected host:port)");
    assertThatThrownBy(() -> PeerAddress.parse("host:http")).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid peer address: 'host:http' (expected host:port)");
    assertThatThrownBy(() -> PeerAddress.parse("::1:80")).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid peer address: '::1:80' (expected [ipv6]:port for an IPv6 literal)");
    assertThatThrownBy(() -> PeerAddress.parse("host:0")).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid peer port: 0 (expected 1..65535)");
    assertThatThrownBy(() -> new PeerAddress(" ", 80)).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid peer host: ' ' (expected a host name or IP address, IPv6 without brackets)");
    assertThatThrownBy(() -> new PeerAddress(null, 80)).isInstanceOf(NullPointerException.class)
        .hasMessage("host is null");
  }

  @Test
  void describesTheRing() {
    GroupSpec spec = new GroupSpec("run-7", 0, THREE, Duration.ofSeconds(30));
    assertThat(spec.worldSize()).isEqualTo(3);
    assertThat(spec.next()).isEqualTo(1);
    assertThat(spec.previous()).isEqualTo(2);
    GroupSpec last = new GroupSpec("run-7", 2, THREE, Duration.ofSeconds(30));
    assertThat(last.next()).isEqualTo(0);
    assertThat(last.previous()).isEqualTo(1);
  }

  @Test
  void usesOneTimeoutForBothWhenGivenOne() {
    GroupSpec spec = new GroupSpec("run-7", 0, THREE, Duration.ofSeconds(30));
    assertThat(spec.connectTimeout()).isEqualTo(Duration.ofSeconds(30));
    assertThat(spec.operationTimeout()).isEqualTo(Duration.ofSeconds(30));
  }

  @Test
  void copiesThePeerList() {
    List<PeerAddress> peers = new ArrayList<>(THREE);
    GroupSpec spec = new GroupSpec("run-7", 1, peers, Duration.ofSeconds(1));
    peers.clear();
    assertThat(spec.peers()).hasSize(3);
    assertThatThrownBy(() -> spec.peers().clear()).isInstanceOf(UnsupportedOperationException.class);
  }

  @Test
  void rejectsBadGroupSpecs() {
    Duration t = Duration.ofSeconds(1);
    assertThatThrownBy(() -> new GroupSpec("run", 3, THREE, t)).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid rank: 3 (expected 0..2 for 3 peers)");
    assertThatThrownBy(() -> new GroupSpec("run", -1, THREE, t)).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid rank: -1 (expected 0..2 for 3 peers)");
    assertThatThrownBy(() -> new GroupSpec("run", 0, List.of(), t)).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid peers for group 'run': empty (expected one per rank)");
    assertThatThrownBy(() -> new GroupSpec(" ", 0, THREE, t)).isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid group id: ' ' (expected 1..256 UTF-8 bytes, not blank)");
    assertThatThrownBy(() -> new GroupSpec("run", 0, List.of(THREE.get(0), THREE.get(1), THREE.get(0)), t))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid peers for group 'run': ranks 0 and 2 share the address a:1 (expected one listening "
            + "socket per rank)");
    assertThatThrownBy(() -> new GroupSpec("run", 0, THREE, Duration.ZERO))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid connect timeout: PT0S (expected more than 0 and at most 2147483647 ms)");
    assertThatThrownBy(() -> new GroupSpec("run", 0, THREE, t, Duration.ofDays(25)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("Invalid operation timeout: PT600H (expected more than 0 and at most 2147483647 ms)");
    assertThatThrownBy(() -> new GroupSpec("run", 0, THREE, null)).isInstanceOf(NullPointerException.class)
        .hasMessage("connectTimeout is null");
  }

  @Test
  void formatsDurationsForMessages() {
    assertThat(Durations.format(Duration.ofMillis(400))).isEqualTo("400ms");
    assertThat(Durations.format(Duration.ofSeconds(30))).isEqualTo("30s");
    assertThat(Durations.format(Duration.ofMillis(1500))).isEqualTo("1.5s");
  }
}
