package dev.stagecraft.jobs.network;

import dev.stagecraft.testing.HostNetwork.Host;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Locale;
import java.util.Set;
import java.util.stream.Stream;

/** An executor JVM of the host bed, looked at from outside through /proc: its threads and its TCP sockets. */
record Executor(ProcessHandle process) {
  /** What the executor holds: threads of our collectives, and TCP sockets connected to one host. */
  record Census(int collectiveThreads, int socketsTo) {}

  /** The executor that worker {@code index}'s JVM launched (there is one per worker in the bed). */
  static Executor of(HostBed bed, int index) {
    return new Executor(bed.cluster.workers().get(index).descendants()
        .filter(p -> cmdline(p).contains("CoarseGrainedExecutorBackend")).findFirst()
        .orElseThrow(() -> new AssertionError("worker " + index + " runs no executor")));
  }

  Census census(Host peer) throws IOException {
    return new Census(collectiveThreads(), socketsTo(peer));
  }

  /**
   * Threads named {@code stagecraft-collective-…} (the kernel keeps the first 15 characters of a thread's name): a
   * communicator's watcher and connector.
   */
  int collectiveThreads() throws IOException {
    int n = 0;
    try (Stream<Path> tasks = Files.list(Path.of("/proc/" + process.pid() + "/task"))) {
      for (Path t : (Iterable<Path>) tasks::iterator) {
        try {
          if (Files.readString(t.resolve("comm")).startsWith("stagecraft-coll")) {
            n++;
          }
        } catch (IOException e) {
          // the thread ended meanwhile
        }
      }
    }
    return n;
  }

  /** The TCP ports this process listens on. */
  java.util.SortedSet<Integer> listeningPorts() throws IOException {
    Set<String> inodes = socketInodes();
    java.util.SortedSet<Integer> ports = new java.util.TreeSet<>();
    for (String table : new String[] {"tcp", "tcp6"}) {
      for (String line : Files.readAllLines(Path.of("/proc/" + process.pid() + "/net/" + table))) {
        String[] f = line.trim().split("\\s+");
        // Column 4 is the state; 0A is LISTEN.
        if (f.length > 9 && f[3].equals("0A") && inodes.contains(f[9])) {
          ports.add(Integer.parseInt(f[1].substring(f[1].indexOf(':') + 1), 16));
        }
      }
    }
    return ports;
  }

  private Set<String> socketInodes() throws IOException {
    Set<String> inodes = new HashSet<>();
    try (Stream<Path> fds = Files.list(Path.of("/proc/" + process.pid() + "/fd"))) {
      for (Path fd : (Iterable<Path>) fds::iterator) {
        try {
          String target = Files.readSymbolicLink(fd).toString();
          if (target.startsWith("socket:[")) {
            inodes.add(target.substring("socket:[".length(), target.length() - 1));
          }
        } catch (IOException e) {
          // closed meanwhile
        }
      }
    }
    return inodes;
  }

  /** This process's TCP sockets whose remote end is {@code peer} (any state but LISTEN). */
  int socketsTo(Host peer) throws IOException {
    Set<String> inodes = socketInodes();
    String v4 = littleEndianHex(peer.address()) + ":";
    // Java's sockets are IPv6 sockets by default; an IPv4 peer appears as ::ffff:a.b.c.d in the tcp6 table.
    String v6 = "0000000000000000FFFF0000" + v4;
    int n = 0;
    // The tables of the process's network namespace; column 3 is the remote address, column 10 the inode.
    for (String table : new String[] {"tcp", "tcp6"}) {
      for (String line : Files.readAllLines(Path.of("/proc/" + process.pid() + "/net/" + table))) {
        String[] f = line.trim().split("\\s+");
        if (f.length > 9 && (f[2].startsWith(v4) || f[2].startsWith(v6)) && inodes.contains(f[9])) {
          n++;
        }
      }
    }
    return n;
  }

  /** 198.18.0.12 as /proc/net/tcp prints it on a little-endian machine: 0C0012C6. */
  static String littleEndianHex(String address) {
    String[] octets = address.split("\\.");
    StringBuilder s = new StringBuilder();
    for (int i = 3; i >= 0; i--) {
      s.append(String.format(Locale.ROOT, "%02X", Integer.parseInt(octets[i])));
    }
    return s.toString();
  }

  private static String cmdline(ProcessHandle p) {
    try {
      return Files.readString(Path.of("/proc/" + p.pid() + "/cmdline")).replace('\0', ' ');
    } catch (IOException e) {
      return "";
    }
  }
}
