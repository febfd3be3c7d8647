package dev.stagecraft.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.opentest4j.TestAbortedException;

/**
 * Several hosts on this machine for tests: one Linux network namespace per host, each joined by a veth pair to a
 * bridge that lives in a namespace of its own (not the machine's), with an address from 198.18.0.0/24 (the range RFC
 * 2544 sets aside for network tests) that exists only inside these namespaces. No host has a default route, so
 * nothing reaches outside them, and the machine's own network is never touched.
 *
 * <pre>
 *   host "master"  eth0 198.18.0.10 ─┐
 *   host "w1"      eth0 198.18.0.11 ─┼─ veth ─ bridge br0 (namespace …-net)
 *   host "driver"  eth0 198.18.0.12 ─┘
 * </pre>
 *
 * <p>Faults act on a host's link, on the bridge side, as a switch port or cable would:
 * <ul>
 *   <li>{@link #partition}: the bridge port goes down; packets to and from the host vanish, nobody gets a reset (TCP
 *       peers see only silence, as when a real host drops off the network);
 *   <li>{@link #slow}: a token bucket ({@code tc tbf}) limits both directions of the link to a rate ({@code netem},
 *       which could add latency or loss, is not in this kernel);
 *   <li>{@link #flap}: the port goes down and up every half period until {@link #heal}.
 * </ul>
 *
 * <p>Processes run in a host through {@code ip netns exec} (see {@link #command}); they share this machine's file
 * system, as hosts that mount one shared file system would. {@link #close} kills every process still in the hosts and
 * deletes the namespaces; namespaces left by an earlier test JVM that crashed are deleted when the next one starts.
 * Without the rights to make namespaces (not root, or a kernel without them) {@link #create} aborts the test with the
 * reason, which JUnit reports as skipped and which is also printed.
 */
public final class HostNetwork implements AutoCloseable {
  /** The subnet of every host network: RFC 2544's benchmarking range, /24. */
  public static final String SUBNET = "198.18.0.0/24";

  private static final String PREFIX = "scnet";
  private static final Duration COMMAND_TIMEOUT = Duration.ofSeconds(20);
  private static final Path NETNS_DIR = Path.of("/var/run/netns");

  /** One host: its name in tests, its namespace and its address. */
  public record Host(String name, String namespace, String address, String bridgePort) {
    @Override
    public String toString() {
      return name + " (" + address + ")";
    }
  }

  private final String id;
  private final String bridgeNamespace;
  private final Map<String, Host> hosts = new LinkedHashMap<>();
  private final Map<String, Thread> flappers = new ConcurrentHashMap<>();

  private HostNetwork(String id) {
    this.id = id;
    this.bridgeNamespace = id + "-net";
  }

  /**
   * Creates one host per name, in order, addresses 198.18.0.10, .11, …; aborts the calling test (skipped, reason
   * printed) when this machine cannot make network namespaces.
   */
  public static HostNetwork create(String... names) {
    if (names.length == 0 || names.length > 200) {
      throw new IllegalArgumentException("Invalid host count: " + names.length + " (expected 1 to 200)");
    }
    String unavailable = unavailableReason();
    if (unavailable != null) {
      System.err.println("HostNetwork: skipping, " + unavailable);
      throw new TestAbortedException("Network namespaces are not available here: " + unavailable);
    }
    removeLeftovers();
    HostNetwork net = new HostNetwork(PREFIX + ProcessHandle.current().pid() + "x" + Long.toString(System.nanoTime()
        % 1_000_000, 36));
    try {
      net.ip("netns", "add", net.bridgeNamespace);
      net.ip("-n", net.bridgeNamespace, "link", "add", "br0", "type", "bridge");
      net.ip("-n", net.bridgeNamespace, "link", "set", "br0", "up");
      for (int i = 0; i < names.length; i++) {
        net.addHost(names[i], i);
      }
      return net;
    } catch (IOException | RuntimeException e) {
      net.close();
      throw new IllegalStateException("Cannot build the host network: " + e.getMessage(), e);
    }
  }

  private void addHost(String name, int index) throws IOException {
    if (!name.matches("[a-z][a-z0-9]{0,15}") || hosts.containsKey(name)) {
      throw new IllegalArgumentException("Invalid host name: '" + name + "' (expected a unique [a-z][a-z0-9]* name)");
    }
    Host host = new Host(name, id + "-" + name, "198.18.0." + (10 + index), "p" + index);
    ip("netns", "add", host.namespace());
    hosts.put(name, host);
    ip("-n", bridgeNamespace, "link", "add", host.bridgePort(), "type", "veth", "peer", "name", "eth0", "netns",
        host.namespace());
    ip("-n", bridgeNamespace, "link", "set", host.bridgePort(), "master", "br0", "up");
    ip("-n", host.namespace(), "addr", "add", host.address() + "/24", "dev", "eth0");
    ip("-n", host.namespace(), "link", "set", "eth0", "up");
    ip("-n", host.namespace(), "link", "set", "lo", "up");
  }

  public Host host(String name) {
    Host h = hosts.get(name);
    if (h == null) {
      throw new IllegalArgumentException("No host '" + name + "' (hosts: " + hosts.keySet() + ")");
    }
    return h;
  }

  public List<Host> hosts() {
    return List.copyOf(hosts.values());
  }

  /** {@code cmd} as run inside {@code host}: {@code ip netns exec NS cmd…} (ip execs it, so the pid is the command's). */
  public List<String> command(Host host, List<String> cmd) {
    List<String> out = new ArrayList<>(List.of("ip", "netns", "exec", host.namespace()));
    out.addAll(cmd);
    return out;
  }

  /** Cuts the host off: its bridge port goes down, packets vanish in both directions, nobody gets a reset. */
  public void partition(Host host) throws IOException {
    stopFlapping(host);
    linkState(host, false);
  }

  /**
   * Undoes {@link #partition}, {@link #slow} and {@link #flap}: the link is up at full speed. Connections that had
   * data in flight through the partition resume only at their next retransmission, which TCP's backoff may put
   * seconds after the heal (as on a real network); new connections work at once.
   */
  public void heal(Host host) throws IOException {
    stopFlapping(host);
    linkState(host, true);
    forgetFailedNeighbours();
    tc(bridgeNamespace, "qdisc", "del", "dev", host.bridgePort(), "root");
    tc(host.namespace(), "qdisc", "del", "dev", "eth0", "root");
  }

  /**
   * Limits the host's link to {@code bitsPerSecond} in both directions with a token bucket: bursts of at most 32 KiB
   * (a few packets), and packets that would wait longer than 1 s in the queue dropped, as a congested link drops them.
   */
  public void slow(Host host, long bitsPerSecond) throws IOException {
    if (bitsPerSecond < 8_000) {
      throw new IllegalArgumentException("Invalid rate: " + bitsPerSecond + " bit/s (expected at least 8000)");
    }
    for (String[] link : new String[][] {{bridgeNamespace, host.bridgePort()}, {host.namespace(), "eth0"}}) {
      tc(link[0], "qdisc", "del", "dev", link[1], "root");
      run(List.of("ip", "netns", "exec", link[0], "tc", "qdisc", "add", "dev", link[1], "root", "tbf", "rate",
          bitsPerSecond + "bit", "burst", "32kb", "latency", "1s"), true);
    }
  }

  /** Takes the host's link down and up every half {@code period}, starting with down, until {@link #heal}. */
  public void flap(Host host, Duration period) {
    stopFlapping(host);
    long half = Math.max(1, period.toMillis() / 2);
    Thread t = new Thread(() -> {
      boolean up = false;
      try {
        while (!Thread.currentThread().isInterrupted()) {
          linkState(host, up);
          up = !up;
          Thread.sleep(half);
        }
      } catch (InterruptedException e) {
        // healed
      } catch (IOException e) {
        System.err.println("HostNetwork: flapping " + host + " stopped: " + e.getMessage());
      }
    }, "flap-" + host.name());
    t.setDaemon(true);
    flappers.put(host.name(), t);
    t.start();
  }

  /** The qdiscs on the host's link, as {@code tc} prints them (tests check a rate is in place). */
  public String linkQueue(Host host) throws IOException {
    return run(List.of("ip", "netns", "exec", bridgeNamespace, "tc", "qdisc", "show", "dev", host.bridgePort()),
        true);
  }

  private void stopFlapping(Host host) {
    Thread t = flappers.remove(host.name());
    if (t != null) {
      t.interrupt();
      try {
        t.join(COMMAND_TIMEOUT.toMillis());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /**
   * Every host forgets the neighbours it failed to reach: after a partition the kernel answers "No route to host" for
   * a healed peer until its failed ARP entry expires (seconds), which would blur when the link came back.
   */
  private void forgetFailedNeighbours() throws IOException {
    for (Host h : hosts.values()) {
      run(List.of("ip", "-n", h.namespace(), "neigh", "flush", "all"), false);
    }
  }

  private void linkState(Host host, boolean up) throws IOException {
    ip("-n", bridgeNamespace, "link", "set", host.bridgePort(), up ? "up" : "down");
  }

  /** Kills every process left in the hosts and deletes their namespaces and the bridge's. */
  @Override
  public void close() {
    flappers.keySet().forEach(name -> stopFlapping(hosts.get(name)));
    List<String> namespaces = new ArrayList<>();
    hosts.values().forEach(h -> namespaces.add(h.namespace()));
    namespaces.add(bridgeNamespace);
    deleteNamespaces(namespaces);
  }

  private static void deleteNamespaces(List<String> namespaces) {
    for (String ns : namespaces) {
      if (!Files.exists(NETNS_DIR.resolve(ns))) {
        continue;
      }
      try {
        for (String pid : run(List.of("ip", "netns", "pids", ns), false).split("\\s+")) {
          if (!pid.isBlank()) {
            ProcessHandle.of(Long.parseLong(pid.trim())).ifPresent(ProcessHandle::destroyForcibly);
          }
        }
        run(List.of("ip", "netns", "del", ns), false);
      } catch (IOException | RuntimeException e) {
        System.err.println("HostNetwork: could not delete namespace " + ns + ": " + e.getMessage());
      }
    }
  }

  /** Namespaces of this kind whose test JVM is gone (crashed or killed before its close). */
  private static void removeLeftovers() {
    if (!Files.isDirectory(NETNS_DIR)) {
      return;
    }
    try (Stream<Path> files = Files.list(NETNS_DIR)) {
      List<String> stale = files.map(p -> p.getFileName().toString())
          .filter(n -> n.matches(PREFIX + "\\d+x.*"))
          .filter(n -> ProcessHandle.of(Long.parseLong(n.substring(PREFIX.length(), n.indexOf('x')))).isEmpty())
          .toList();
      if (!stale.isEmpty()) {
        System.err.println("HostNetwork: deleting namespaces left by an earlier run: " + stale);
        deleteNamespaces(stale);
      }
    } catch (IOException e) {
      System.err.println("HostNetwork: cannot list " + NETNS_DIR + ": " + e.getMessage());
    }
  }

  /** Why namespaces cannot be made here, or null if they can (a throwaway namespace is made and deleted). */
  private static String unavailableReason() {
    if (!"Linux".equals(System.getProperty("os.name"))) {
      return "not Linux";
    }
    String probe = PREFIX + ProcessHandle.current().pid() + "xprobe";
    try {
      run(List.of("ip", "netns", "add", probe), true);
      run(List.of("ip", "netns", "exec", probe, "tc", "qdisc", "show"), true);
      return null;
    } catch (IOException | RuntimeException e) {
      return "'ip netns' / 'tc' failed (needs root and the iproute2 tools): " + e.getMessage();
    } finally {
      try {
        run(List.of("ip", "netns", "del", probe), false);
      } catch (IOException | RuntimeException e) {
        // it was never made
      }
    }
  }

  private void ip(String... args) throws IOException {
    List<String> cmd = new ArrayList<>(List.of("ip"));
    cmd.addAll(List.of(args));
    run(cmd, true);
  }

  /** tc in a namespace; a missing qdisc to delete is not an error. */
  private static void tc(String namespace, String... args) throws IOException {
    List<String> cmd = new ArrayList<>(List.of("ip", "netns", "exec", namespace, "tc"));
    cmd.addAll(List.of(args));
    run(cmd, false);
  }

  private static String run(List<String> cmd, boolean check) throws IOException {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    try {
      // Wait first, then read: reading first would block past the timeout on a command that hangs. What ip and tc
      // print fits in the pipe's buffer.
      if (!p.waitFor(COMMAND_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException(String.join(" ", cmd) + " did not finish within " + COMMAND_TIMEOUT.toSeconds() + " s");
      }
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (check && p.exitValue() != 0) {
        throw new IOException(String.join(" ", cmd) + " failed (exit " + p.exitValue() + "): " + out.trim());
      }
      return out;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
      throw new IOException("Interrupted while running " + String.join(" ", cmd), e);
    }
  }
}
