package dev.stagecraft.training.collective;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Mutual HMAC-SHA256 challenge–response on a fresh connection, client = the rank that connects, server = the rank
 * that accepts.
 *
 * <pre>
 * S → C  magic, version, nonceS
 * C → S  magic, version, groupId, worldSize, clientRank, integrity, nonceC,
 *        HMAC(secret, channel | "client" | group | n | ranks | integrity | nonces)
 * S → C  OK, HMAC(secret, "server" | …)            or  REJECTED, reason
 * C → S  OK                                         or  REJECTED
 * </pre>
 *
 * The server proves itself only after the client has, so it is never an oracle for a stranger, and a client that has
 * not proved itself is refused with one word, whatever it got wrong (the details go to the server's log); the role label and
 * both fresh nonces prevent reflecting or replaying a proof; the ranks inside the MAC stop a peer from claiming a
 * rank it did not prove, and the frame integrity mode inside it stops a host on the path from downgrading it; the
 * {@link Channel} label keeps a ring connection and a pipeline link apart. Both sides then derive the connection's two
 * frame keys ({@link Session}) from the secret and both nonces. Reads are
 * unbuffered so no frame that follows the handshake is swallowed. Messages of
 * {@link Rejected} never contain the secret or MAC values.
 */
final class Handshake {
  static final int MAGIC = 0x53544743; // "STGC"
  static final byte VERSION = 2;
  static final int NONCE_BYTES = 32;
  static final int MAC_BYTES = 32;
  static final byte OK = 0;
  static final byte REJECTED = 1;
  /** All a client that has not proved it knows the secret is told when it is refused. */
  static final String REFUSAL = "refused";
  private static final byte ROLE_CLIENT = 'C';
  private static final byte ROLE_SERVER = 'S';
  private static final SecureRandom RANDOM = new SecureRandom();

  /**
   * The keys of one authenticated connection's frames, one per direction (HKDF-SHA256: extract with both nonces as
   * salt from the secret, expand with a label per channel and direction, the integrity mode, the group and both
   * ranks), so no two connections, directions or runs share a key.
   */
  record Session(FrameIntegrity integrity, byte[] clientToServer, byte[] serverToClient) {}

  /** The peer failed or refused authentication; the message says why and is safe to log. */
  static final class Rejected extends Exception {
    private static final long serialVersionUID = 1L;

    Rejected(String message) {
      super(message);
    }
  }

  private final String groupId;
  private final byte[] groupIdBytes;
  private final int worldSize;
  private final int localRank;
  private final SecretKeySpec key;
  private final FrameIntegrity integrity;
  private final Channel channel;
  private final byte[] proofLabel;
  /** The input keying material of the frame keys; never logged. */
  private final byte[] secret;

  Handshake(GroupSpec spec, byte[] secret, FrameIntegrity integrity, Channel channel) {
    this(spec.groupId(), spec.worldSize(), spec.rank(), secret, integrity, channel);
  }

  /** Tests play a rank with arbitrary claims, under the default integrity mode. */
  Handshake(String groupId, int worldSize, int localRank, byte[] secret) {
    this(groupId, worldSize, localRank, secret, FrameIntegrity.DEFAULT);
  }

  /** Tests play a ring rank with arbitrary claims. */
  Handshake(String groupId, int worldSize, int localRank, byte[] secret, FrameIntegrity integrity) {
    this(groupId, worldSize, localRank, secret, integrity, Channel.RING);
  }

  Handshake(String groupId, int worldSize, int localRank, byte[] secret, FrameIntegrity integrity, Channel channel) {
    this.integrity = integrity;
    this.channel = channel;
    this.proofLabel = channel.proofLabel();
    this.groupId = groupId;
    this.groupIdBytes = groupId.getBytes(StandardCharsets.UTF_8);
    this.worldSize = worldSize;
    this.localRank = localRank;
    this.key = new SecretKeySpec(secret, "HmacSHA256"); // copies the secret
    this.secret = secret.clone();
  }

  /**
   * Server side: returns if the client proved it belongs to the group as {@code expectedRank}; otherwise throws, after
   * telling the client it was refused. A client that has not proved it knows the secret learns nothing but
   * {@link #REFUSAL}: not this group's id, world size or ranks, nor what it got wrong. Only a client that did prove
   * it (one of our own ranks, of this run or of another group sharing the secret) is told why.
   */
  Session acceptFrom(Socket socket, int expectedRank) throws IOException, Rejected {
    DataInputStream in = new DataInputStream(socket.getInputStream());
    OutputStream out = socket.getOutputStream();
    byte[] nonceS = nonce();
    ByteArrayOutputStream hello = new ByteArrayOutputStream();
    DataOutputStream h = new DataOutputStream(hello);
    h.writeInt(MAGIC);
    h.writeByte(VERSION);
    h.write(nonceS);
    out.write(hello.toByteArray());
    out.flush();

    int magic = in.readInt();
    if (magic != MAGIC) {
      throw new Rejected("not a Stagecraft collective peer (unexpected greeting)");
    }
    int version = in.readUnsignedByte();
    if (version != VERSION) {
      // The client saw this rank's version in the greeting and can tell the mismatch itself.
      throw refuse(out, "unsupported protocol version " + version + " (expected " + VERSION + ")");
    }
    int groupLength = in.readUnsignedShort();
    if (groupLength > GroupSpec.MAX_GROUP_ID_BYTES) {
      throw refuse(out,
          "group id of " + groupLength + " bytes (expected at most " + GroupSpec.MAX_GROUP_ID_BYTES + ")");
    }
    byte[] claimedGroup = new byte[groupLength];
    in.readFully(claimedGroup);
    int claimedWorldSize = in.readInt();
    int claimedRank = in.readInt();
    byte claimedIntegrity = in.readByte();
    byte[] nonceC = new byte[NONCE_BYTES];
    in.readFully(nonceC);
    byte[] proof = new byte[MAC_BYTES];
    in.readFully(proof);

    // The proof covers the group and world size the client claims: a member of another group that shares the
    // secret proves itself too, and may then be told what differs.
    boolean proved = MessageDigest.isEqual(proof,
        mac(ROLE_CLIENT, claimedGroup, claimedWorldSize, claimedRank, localRank, claimedIntegrity, nonceS, nonceC));
    if (!proved) {
      throw refuse(out, unproved(claimedGroup, claimedWorldSize, claimedRank));
    }
    if (!MessageDigest.isEqual(claimedGroup, groupIdBytes)) {
      throw reject(out, "group '" + printable(claimedGroup) + "' (expected '" + groupId + "')");
    }
    if (claimedWorldSize != worldSize) {
      throw reject(out, "world size " + claimedWorldSize + " (expected " + worldSize + ")");
    }
    if (claimedRank != expectedRank) {
      throw reject(out, "unexpected rank " + claimedRank + " (rank " + localRank + " accepts only rank " + expectedRank
          + ", " + channel.predecessor() + ")");
    }
    if (claimedIntegrity != integrity.code()) {
      throw reject(out, "frame integrity '" + FrameIntegrity.describe(claimedIntegrity) + "' (rank " + localRank
          + " uses '" + integrity.key() + "'; every rank of a run must use the same)");
    }
    ByteArrayOutputStream answer = new ByteArrayOutputStream();
    answer.write(OK);
    answer.write(mac(ROLE_SERVER, claimedRank, localRank, nonceS, nonceC));
    out.write(answer.toByteArray());
    out.flush();
    if (in.readByte() != OK) {
      throw new Rejected("rank " + claimedRank + " did not accept this rank's proof (different secret?)");
    }
    return session(claimedRank, localRank, nonceS, nonceC);
  }

  /** Client side: returns if the server proved it is rank {@code serverRank} of the group and accepted this rank. */
  Session connectTo(Socket socket, int serverRank) throws IOException, Rejected {
    DataInputStream in = new DataInputStream(socket.getInputStream());
    OutputStream out = socket.getOutputStream();
    if (in.readInt() != MAGIC) {
      throw new Rejected("not a Stagecraft collective peer (unexpected greeting)");
    }
    int version = in.readUnsignedByte();
    if (version != VERSION) {
      throw new Rejected("unsupported protocol version " + version + " (expected " + VERSION + ")");
    }
    byte[] nonceS = new byte[NONCE_BYTES];
    in.readFully(nonceS);
    byte[] nonceC = nonce();
    out.write(clientHello(localRank, nonceC, mac(ROLE_CLIENT, localRank, serverRank, nonceS, nonceC)));
    out.flush();

    int status = in.readUnsignedByte();
    if (status == REJECTED) {
      String reason = in.readUTF();
      throw new Rejected(REFUSAL.equals(reason)
          ? "refused this rank (different secret, group or world size? that rank's log says which)"
          : "rejected this rank: " + reason);
    }
    if (status != OK) {
      throw new Rejected("sent an unexpected handshake answer");
    }
    byte[] proof = new byte[MAC_BYTES];
    in.readFully(proof);
    if (!MessageDigest.isEqual(proof, mac(ROLE_SERVER, localRank, serverRank, nonceS, nonceC))) {
      out.write(REJECTED);
      out.flush();
      throw new Rejected("failed authentication as rank " + serverRank + " (different secret, or not a member)");
    }
    out.write(OK);
    out.flush();
    return session(localRank, serverRank, nonceS, nonceC);
  }

  /** The client's hello; tests build forged ones from it. */
  byte[] clientHello(int claimedRank, byte[] nonceC, byte[] proof) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    DataOutputStream h = new DataOutputStream(bytes);
    h.writeInt(MAGIC);
    h.writeByte(VERSION);
    h.writeShort(groupIdBytes.length);
    h.write(groupIdBytes);
    h.writeInt(worldSize);
    h.writeInt(claimedRank);
    h.writeByte(integrity.code());
    h.write(nonceC);
    h.write(proof);
    return bytes.toByteArray();
  }

  /** The client's proof for {@code clientRank} talking to {@code serverRank}. */
  byte[] clientProof(int clientRank, int serverRank, byte[] nonceS, byte[] nonceC) {
    return mac(ROLE_CLIENT, clientRank, serverRank, nonceS, nonceC);
  }

  private byte[] mac(byte role, int clientRank, int serverRank, byte[] nonceS, byte[] nonceC) {
    return mac(role, groupIdBytes, worldSize, clientRank, serverRank, integrity.code(), nonceS, nonceC);
  }

  private byte[] mac(byte role, byte[] group, int n, int clientRank, int serverRank, byte mode, byte[] nonceS,
      byte[] nonceC) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256"); // one per call: the acceptor and connector threads run concurrently
      mac.init(key);
      mac.update(proofLabel);
      mac.update(role);
      mac.update(ByteBuffer.allocate(4 * Integer.BYTES)
          .putInt(group.length).putInt(n).putInt(clientRank).putInt(serverRank).array());
      mac.update(group);
      mac.update(mode);
      mac.update(nonceS);
      mac.update(nonceC);
      return mac.doFinal();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("Cannot compute HMAC-SHA256: " + e.getMessage(), e);
    }
  }

  /** The connection's frame keys (see {@link Session}); both sides compute the same. */
  private Session session(int clientRank, int serverRank, byte[] nonceS, byte[] nonceC) {
    if (integrity == FrameIntegrity.NONE) {
      return new Session(integrity, null, null);
    }
    byte[] salt = ByteBuffer.allocate(2 * NONCE_BYTES).put(nonceS).put(nonceC).array();
    byte[] prk = hmac(salt, secret);
    return new Session(integrity, expand(prk, "client-to-server", clientRank, serverRank),
        expand(prk, "server-to-client", clientRank, serverRank));
  }

  private byte[] expand(byte[] prk, String direction, int clientRank, int serverRank) {
    byte[] label = (channel.frameLabel() + "|" + integrity.key() + "|" + direction).getBytes(StandardCharsets.US_ASCII);
    ByteBuffer info = ByteBuffer.allocate(2 + label.length + 2 + groupIdBytes.length + 3 * Integer.BYTES + 1)
        .putShort((short) label.length).put(label).putShort((short) groupIdBytes.length).put(groupIdBytes)
        .putInt(worldSize).putInt(clientRank).putInt(serverRank).put((byte) 1); // HKDF-Expand, first block
    return hmac(prk, info.array());
  }

  private static byte[] hmac(byte[] key, byte[] data) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(key, "HmacSHA256"));
      return mac.doFinal(data);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("Cannot compute HMAC-SHA256: " + e.getMessage(), e);
    }
  }

  static byte[] nonce() {
    byte[] nonce = new byte[NONCE_BYTES];
    RANDOM.nextBytes(nonce);
    return nonce;
  }

  /** What an unauthenticated client got wrong, as far as this rank can tell, for its own log. */
  private String unproved(byte[] claimedGroup, int claimedWorldSize, int claimedRank) {
    String claims = "";
    if (!MessageDigest.isEqual(claimedGroup, groupIdBytes)) {
      claims += " of group '" + printable(claimedGroup) + "' (expected '" + groupId + "')";
    }
    if (claimedWorldSize != worldSize) {
      claims += " with world size " + claimedWorldSize + " (expected " + worldSize + ")";
    }
    return "authentication failed for claimed rank " + claimedRank + claims + " (wrong secret?)";
  }

  /**
   * Refuses a client that has not proved it knows the secret: it is sent {@link #REFUSAL} only, while
   * {@code reason} goes into the exception (for this rank's log).
   */
  private static Rejected refuse(OutputStream out, String reason) {
    send(out, REFUSAL);
    return new Rejected(reason + " (the client was told only: " + REFUSAL + ")");
  }

  /** Refuses an authenticated client, telling it {@code reason}. */
  private static Rejected reject(OutputStream out, String reason) {
    send(out, reason);
    return new Rejected(reason);
  }

  private static void send(OutputStream out, String reason) {
    try {
      ByteArrayOutputStream bytes = new ByteArrayOutputStream();
      DataOutputStream d = new DataOutputStream(bytes);
      d.writeByte(REJECTED);
      d.writeUTF(reason);
      out.write(bytes.toByteArray());
      out.flush();
    } catch (IOException e) {
      // the peer may be gone already; the rejection is logged by the caller either way
    }
  }

  /** Untrusted bytes for a log line: printable ASCII only, at most 64 characters. */
  private static String printable(byte[] bytes) {
    StringBuilder s = new StringBuilder();
    for (int i = 0; i < bytes.length && s.length() < 64; i++) {
      char c = (char) (bytes[i] & 0xff);
      s.append(c >= 0x20 && c < 0x7f ? c : '?');
    }
    return s.toString();
  }
}
