package dev.stagecraft.training.collective;

import static java.util.Objects.requireNonNull;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Smaller groups among the ranks of a connected {@link Communicator} (the world), over the same secret and frame
 * protection: a ring among some ranks ({@link #ring}), or the links of a pipeline ({@link #pipe}).
 *
 * <p>Collective: every rank of the world calls the same methods in the same order (each with the members of its own
 * group), since each call gathers every rank's new listening address over the world. A group's id is the world's id
 * with the call's name and its members appended, so a rank of one group can never be taken for one of another.
 */
public final class Subgroups {
  private final Communicator world;
  private final String groupId;
  private final InetAddress bindAddress;
  private final byte[] secret;
  private final Duration timeout;
  private final FrameIntegrity integrity;

  /**
   * @param bindAddress where this rank listens (the address its peers reach it at)
   * @param secret the world's secret (copied; kept as long as this object)
   */
  public Subgroups(Communicator world, String groupId, InetAddress bindAddress, byte[] secret, Duration timeout,
      FrameIntegrity integrity) {
    this.world = requireNonNull(world, "world is null");
    this.groupId = requireNonNull(groupId, "groupId is null");
    this.bindAddress = requireNonNull(bindAddress, "bindAddress is null");
    this.secret = requireNonNull(secret, "secret is null").clone();
    this.timeout = requireNonNull(timeout, "timeout is null");
    this.integrity = requireNonNull(integrity, "integrity is null");
  }

  /** A ring among {@code members} (world ranks in ring order; this rank among them). */
  public Communicator ring(String name, List<Integer> members) {
    Joined j = join(name, members);
    return Communicator.connect(j.server, j.spec, secret, integrity);
  }

  /** The links of a pipeline whose stages are {@code members} (world ranks in stage order; this rank among them). */
  public PipeLinks pipe(String name, List<Integer> members) {
    Joined j = join(name, members);
    return PipeLinks.connect(j.server, j.spec, secret, integrity);
  }

  private record Joined(ServerSocket server, GroupSpec spec) {}

  private Joined join(String name, List<Integer> members) {
    int me = members.indexOf(world.rank());
    if (me < 0) {
      throw new IllegalArgumentException("Rank " + world.rank() + " is not among the members " + members + " of '"
          + name + "'");
    }
    ServerSocket server;
    try {
      server = Communicator.listen(bindAddress);
    } catch (IOException e) {
      throw new UncheckedIOException("Cannot listen on " + bindAddress.getHostAddress() + " for group '" + name + "'",
          e);
    }
    try {
      String self = new PeerAddress(bindAddress.getHostAddress(), server.getLocalPort()).toString();
      List<byte[]> all = world.allGather(self.getBytes(StandardCharsets.UTF_8));
      List<PeerAddress> peers = new ArrayList<>();
      for (int rank : members) {
        peers.add(PeerAddress.parse(new String(all.get(rank), StandardCharsets.UTF_8)));
      }
      String id = groupId + "/" + name + members.toString().replace(" ", "");
      return new Joined(server, new GroupSpec(id, me, peers, timeout));
    } catch (RuntimeException e) {
      RingConnector.closeQuietly(server, "listening socket");
      throw e;
    }
  }
}
