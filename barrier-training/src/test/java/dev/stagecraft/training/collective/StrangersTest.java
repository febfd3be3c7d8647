package dev.stagecraft.training.collective;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;

import dev.stagecraft.testing.LogCapture;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.time.Duration;
import java.util.Random;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Strangers that talk to a rank before its ring is connected: whatever they send, they are told nothing but
 * "refused" (not the group, world size, ranks or what they got wrong), the rank logs why, naming their address, and
 * the real ranks connect and reduce as if nobody had come.
 */
@Timeout(60)
class StrangersTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(5);
  private static final byte[] WRONG_SECRET = "not-the-secret-0123456789".getBytes(UTF_8);
  /** Magic, version, the server's nonce. */
  private static final int GREETING_BYTES = 4 + 1 + Handshake.NONCE_BYTES;

  @Test
  void aStrangerWithTheWrongSecretLearnsNothingButRefused() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<Communicator> rank1 = group.connectAsync(1);
      Handshake stranger = new Handshake("someone-else", 7, 0, WRONG_SECRET);
      byte[] answer;
      try (Socket socket = connect(group, 1)) {
        byte[] greeting = socket.getInputStream().readNBytes(GREETING_BYTES);
        byte[] nonceS = java.util.Arrays.copyOfRange(greeting, 5, GREETING_BYTES);
        byte[] nonceC = Handshake.nonce();
        socket.getOutputStream().write(stranger.clientHello(0, nonceC, stranger.clientProof(0, 1, nonceS, nonceC)));
        answer = readToEnd(socket.getInputStream());
      }
      assertThat(answer).as("all the stranger is told").isEqualTo(rejection(Handshake.REFUSAL));
      group.assertTwoRanksConnectAndSumCorrectly(rank1);
      assertThat(log.lines()).anySatisfy(line -> assertThat(line)
          .startsWith("WARN Rejected connection from /127.0.0.1:")
          .endsWith(" to rank 1 of 2 in group '" + group.groupId + "': authentication failed for claimed rank 0 of "
              + "group 'someone-else' (expected '" + group.groupId + "') with world size 7 (expected 2) "
              + "(wrong secret?) (the client was told only: refused)"));
    }
  }

  @Test
  void aReplayedHelloAndProofFromARealExchangeIsRefused() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT); LogCapture log = new LogCapture(RingConnector.class)) {
      byte[] captured = captureRealHello(group);
      Future<Communicator> rank1 = group.connectAsync(1);
      byte[] answer;
      try (Socket socket = connect(group, 1)) {
        socket.getInputStream().readNBytes(GREETING_BYTES); // a fresh nonce, which the replayed proof does not cover
        socket.getOutputStream().write(captured);
        answer = readToEnd(socket.getInputStream());
      }
      assertThat(answer).isEqualTo(rejection(Handshake.REFUSAL));
      group.assertTwoRanksConnectAndSumCorrectly(rank1);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Rejected connection from /127.0.0.1:")
          && line.endsWith(": authentication failed for claimed rank 0 (wrong secret?) (the client was told only: "
              + "refused)"));
    }
  }

  @Test
  void garbageIsDroppedWithoutAnAnswer() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<Communicator> rank1 = group.connectAsync(1);
      try (Socket socket = connect(group, 1)) {
        byte[] greeting = socket.getInputStream().readNBytes(GREETING_BYTES);
        assertThat(new String(greeting, UTF_8)).doesNotContain(group.groupId);
        byte[] garbage = new byte[4096];
        new Random(42).nextBytes(garbage);
        socket.getOutputStream().write(garbage);
        assertThat(readToEnd(socket.getInputStream())).as("nothing after the greeting").isEmpty();
      }
      group.assertTwoRanksConnectAndSumCorrectly(rank1);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Rejected connection from /127.0.0.1:")
          && line.endsWith(": not a Stagecraft collective peer (unexpected greeting)"));
    }
  }

  /** A real rank 0's hello to a real rank 1 of the group, recorded by a relay on the way. */
  private static byte[] captureRealHello(TestGroup group) throws Exception {
    int helloBytes = 4 + 1 + 2 + group.groupId.length() + 4 + 4 + 1 + Handshake.NONCE_BYTES + Handshake.MAC_BYTES;
    try (ServerSocket elsewhere = new ServerSocket(0, 1, TestGroup.LOOPBACK);
        Relay relay = new Relay(new PeerAddress("127.0.0.1", elsewhere.getLocalPort()), -1, 0, helloBytes)) {
      Future<Object> server = group.submit(() -> {
        try (Socket s = elsewhere.accept()) {
          s.setSoTimeout(5_000);
          new Handshake(group.groupId, 2, 1, TestGroup.SECRET).acceptFrom(s, 0);
        }
        return null;
      });
      try (Socket s = new Socket(relay.address().host(), relay.address().port())) {
        s.setSoTimeout(5_000);
        new Handshake(group.groupId, 2, 0, TestGroup.SECRET).connectTo(s, 1);
      }
      TestGroup.get(server); // the exchange succeeded: the captured proof was a valid one
      assertThat(relay.recorded()).hasSize(helloBytes);
      return relay.recorded();
    }
  }

  private static Socket connect(TestGroup group, int rank) throws IOException {
    Socket socket = new Socket();
    socket.connect(group.peers.get(rank).resolve(), 2_000);
    socket.setSoTimeout(5_000);
    return socket;
  }

  /** What a refused client receives: the greeting's tail is already read; the refusal byte and its reason. */
  private static byte[] rejection(String reason) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    DataOutputStream d = new DataOutputStream(bytes);
    d.writeByte(Handshake.REJECTED);
    d.writeUTF(reason);
    return bytes.toByteArray();
  }

  private static byte[] readToEnd(InputStream in) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    byte[] buffer = new byte[1024];
    try {
      for (int n; (n = in.read(buffer)) >= 0; ) {
        out.write(buffer, 0, n);
      }
    } catch (SocketException e) {
      // reset after the rank closed: everything it sent was read
    }
    return out.toByteArray();
  }
}
