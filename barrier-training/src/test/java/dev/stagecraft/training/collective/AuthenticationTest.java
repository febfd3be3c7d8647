package dev.stagecraft.training.collective;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.testing.LogCapture;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Strangers, wrong ranks, other groups and impostors are turned away, logged, and cannot inject data. */
@Timeout(60)
class AuthenticationTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(5);
  private static final byte[] WRONG_SECRET = "not-the-secret-0123456789".getBytes(UTF_8);

  @Test
  void aStrangerWithoutTheSecretIsRejectedLoggedAndCannotInjectData() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<Communicator> rank1 = group.connectAsync(1);

      Handshake stranger = new Handshake(group.groupId, 2, 0, WRONG_SECRET);
      try (Socket socket = new Socket()) {
        socket.connect(group.peers.get(1).resolve(), 2_000);
        socket.setSoTimeout(2_000);
        assertThatThrownBy(() -> stranger.connectTo(socket, 1))
            .isInstanceOf(Handshake.Rejected.class)
            .hasMessage("refused this rank (different secret, group or world size? that rank's log says which)");
        // It tries to push a gradient anyway: a well-formed first allReduce chunk full of huge values.
        float[] poison = new float[4];
        java.util.Arrays.fill(poison, 1e9f);
        java.nio.ByteBuffer frame = java.nio.ByteBuffer.allocate(Wire.HEADER_BYTES + 16);
        Wire.putHeader(frame, Wire.ALL_REDUCE_SUM, 1, 4, 0, 16);
        Wire.encodeFloats(poison, 0, 4, frame);
        try {
          socket.getOutputStream().write(frame.array());
        } catch (SocketException e) {
          // already closed by rank 1: fine
        }
        assertThat(readsEndOfStream(socket.getInputStream())).as("rank 1 closed the stranger's connection").isTrue();
      }

      group.assertTwoRanksConnectAndSumCorrectly(rank1);

      assertThat(log.lines()).anySatisfy(line -> assertThat(line)
          .startsWith("WARN Rejected connection from /127.0.0.1:")
          .endsWith(" to rank 1 of 2 in group '" + group.groupId
              + "': authentication failed for claimed rank 0 (wrong secret?) (the client was told only: refused)"));
      assertNoSecretIn(log.lines());
    }
  }

  @Test
  void aMemberClaimingARankThatShouldNotConnectIsRejected() throws Exception {
    try (TestGroup group = TestGroup.bind(3, TIMEOUT); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<Communicator> rank1 = group.connectAsync(1);
      // Knows the secret and proves rank 2 correctly, but rank 1 accepts only its ring predecessor, rank 0.
      Handshake rank2 = new Handshake(group.groupId, 3, 2, TestGroup.SECRET);
      try (Socket socket = new Socket()) {
        socket.connect(group.peers.get(1).resolve(), 2_000);
        socket.setSoTimeout(2_000);
        assertThatThrownBy(() -> rank2.connectTo(socket, 1))
            .isInstanceOf(Handshake.Rejected.class)
            .hasMessage("rejected this rank: unexpected rank 2 (rank 1 accepts only rank 0, the previous rank in "
                + "the ring)");
      }
      Future<Communicator> rank0 = group.connectAsync(0);
      Future<Communicator> rank2Real = group.connectAsync(2);
      TestGroup.get(rank0);
      TestGroup.get(rank1);
      TestGroup.get(rank2Real);
      assertThat(group.onEachRank(c -> {
        c.barrier();
        return true;
      })).containsOnly(true);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Rejected connection")
          && line.endsWith(": unexpected rank 2 (rank 1 accepts only rank 0, the previous rank in the ring)"));
    }
  }

  @Test
  void aClaimedRankThatTheProofDoesNotCoverIsRejected() throws Exception {
    try (TestGroup group = TestGroup.bind(3, TIMEOUT); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<Communicator> rank1 = group.connectAsync(1);
      // A member that knows the secret can only prove its own rank: a proof made for rank 2, claiming rank 0.
      Handshake member = new Handshake(group.groupId, 3, 2, TestGroup.SECRET);
      try (Socket socket = new Socket()) {
        socket.connect(group.peers.get(1).resolve(), 2_000);
        socket.setSoTimeout(2_000);
        DataInputStream in = new DataInputStream(socket.getInputStream());
        assertThat(in.readInt()).isEqualTo(Handshake.MAGIC);
        assertThat(in.readByte()).isEqualTo(Handshake.VERSION);
        byte[] nonceS = in.readNBytes(Handshake.NONCE_BYTES);
        byte[] nonceC = Handshake.nonce();
        socket.getOutputStream().write(member.clientHello(0, nonceC, member.clientProof(2, 1, nonceS, nonceC)));
        assertThat(in.readByte()).isEqualTo(Handshake.REJECTED);
        assertThat(in.readUTF()).isEqualTo(Handshake.REFUSAL);
        assertThat(readsEndOfStream(in)).isTrue();
      }
      Future<Communicator> rank0 = group.connectAsync(0);
      Future<Communicator> rank2 = group.connectAsync(2);
      TestGroup.get(rank0);
      TestGroup.get(rank1);
      TestGroup.get(rank2);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Rejected connection")
          && line.contains("authentication failed for claimed rank 0 (wrong secret?)"));
    }
  }

  @Test
  void aPeerOfAnotherRunIsRejected() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT); LogCapture log = new LogCapture(RingConnector.class)) {
      Future<Communicator> rank1 = group.connectAsync(1);
      Handshake otherRun = new Handshake("other-run", 2, 0, TestGroup.SECRET);
      try (Socket socket = new Socket()) {
        socket.connect(group.peers.get(1).resolve(), 2_000);
        socket.setSoTimeout(2_000);
        assertThatThrownBy(() -> otherRun.connectTo(socket, 1))
            .isInstanceOf(Handshake.Rejected.class)
            .hasMessage("rejected this rank: group 'other-run' (expected '" + group.groupId + "')");
      }
      TestGroup.get(group.connectAsync(0));
      TestGroup.get(rank1);
      assertThat(log.lines()).anyMatch(line -> line.contains("group 'other-run'"));
    }
  }

  @Test
  void aSilentStrangerDoesNotKeepTheRealPeerOut() throws Exception {
    // Connect timeout 3 s: the acceptor gives one handshake at most 1 s, then takes the next connection.
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(3));
        LogCapture log = new LogCapture(RingConnector.class);
        Socket silent = new Socket()) {
      silent.connect(group.peers.get(1).resolve(), 2_000); // queued before rank 1 even starts accepting
      List<Communicator> connected = group.connectAll();
      assertThat(connected).hasSize(2);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Dropped connection from /127.0.0.1:")
          && line.contains("to rank 1 of 2 in group '" + group.groupId + "' during the handshake"));
    }
  }

  @Test
  void anImpostorAtAPeerAddressIsRefused() throws Exception {
    try (TestGroup group = TestGroup.bind(2, Duration.ofSeconds(1));
        LogCapture log = new LogCapture(RingConnector.class)) {
      // Whoever holds rank 1's port answers the handshake without knowing the secret: it sends a made-up proof.
      ServerSocket impostorSocket = group.servers.get(1);
      AtomicBoolean refused = new AtomicBoolean();
      Future<Object> impostor = group.submit(() -> {
        impostorSocket.setSoTimeout(2_000);
        while (!impostorSocket.isClosed()) {
          try (Socket s = impostorSocket.accept()) {
            s.setSoTimeout(2_000);
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            out.writeInt(Handshake.MAGIC);
            out.writeByte(Handshake.VERSION);
            out.write(Handshake.nonce());
            DataInputStream in = new DataInputStream(s.getInputStream());
            in.readNBytes(4 + 1 + 2 + group.groupId.length() + 4 + 4 + 1 + Handshake.NONCE_BYTES + Handshake.MAC_BYTES);
            out.writeByte(Handshake.OK);
            out.write(Handshake.nonce()); // 32 bytes that are not the HMAC
            if (in.readByte() == Handshake.REJECTED) {
              refused.set(true);
            }
          } catch (SocketTimeoutException | SocketException e) {
            break; // closed by the test
          } catch (IOException e) {
            // rank 0 gave up mid-exchange (its deadline): wait for its next attempt
          }
        }
        return null;
      });
      Throwable failure = TestGroup.failureOf(group.connectAsync(0));
      assertThat(refused).isTrue();
      assertThat(failure).isInstanceOf(CollectiveException.class)
          .isNotInstanceOf(CollectiveTimeoutException.class)
          .hasMessageContaining("rank 1 at " + group.peers.get(1)
              + " failed authentication as rank 1 (different secret, or not a member)");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(1);
      assertThat(log.lines()).anyMatch(line -> line.startsWith("WARN Cannot connect rank 0 of 2")
          && line.endsWith("failed authentication as rank 1 (different secret, or not a member)"));
      impostorSocket.close();
      TestGroup.get(impostor);
    }
  }

  @Test
  void refusesAShortSecretAndStillClosesTheListeningSocket() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT)) {
      assertThatThrownBy(() -> Communicator.connect(group.servers.get(0), group.spec(0), new byte[15]))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Invalid secret for group '" + group.groupId + "': 15 bytes (expected at least 16)");
      assertThat(group.servers.get(0).isClosed()).isTrue();
    }
  }

  @Test
  void refusesAListeningSocketThatIsNotTheAdvertisedOne() throws Exception {
    try (TestGroup group = TestGroup.bind(2, TIMEOUT)) {
      assertThatThrownBy(() -> Communicator.connect(group.servers.get(1), group.spec(0), TestGroup.SECRET))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessage("Cannot connect rank 0: its server socket listens on port " + group.peers.get(1).port()
              + " but the peers list gives " + group.peers.get(0) + " for rank 0");
    }
  }

  private static boolean readsEndOfStream(InputStream in) throws IOException {
    try {
      return in.read() == -1;
    } catch (SocketException e) {
      return true; // connection reset: closed as well
    }
  }

  private static void assertNoSecretIn(List<String> lines) {
    for (byte[] secret : List.of(TestGroup.SECRET, WRONG_SECRET)) {
      String text = new String(secret, UTF_8);
      String hex = HexFormat.of().formatHex(secret);
      assertThat(lines).noneMatch(line -> line.contains(text) || line.toLowerCase().contains(hex));
    }
  }
}
