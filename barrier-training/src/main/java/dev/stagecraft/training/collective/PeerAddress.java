package dev.stagecraft.training.collective;

import static java.util.Objects.requireNonNull;

import java.net.InetSocketAddress;

/**
 * Where one rank listens: a host name or IP literal and a TCP port. {@link #toString()} gives {@code host:port}
 * ({@code [v6-literal]:port} for IPv6), the form {@link #parse} reads.
 */
public record PeerAddress(String host, int port) {
  public PeerAddress {
    requireNonNull(host, "host is null");
    if (host.isBlank() || host.startsWith("[") || host.endsWith("]")) {
      throw new IllegalArgumentException(
          "Invalid peer host: '" + host + "' (expected a host name or IP address, IPv6 without brackets)");
    }
    if (port < 1 || port > 65_535) {
      throw new IllegalArgumentException("Invalid peer port: " + port + " (expected 1..65535)");
    }
  }

  /** Reads {@code host:port} or {@code [ipv6]:port}. */
  public static PeerAddress parse(String hostAndPort) {
    requireNonNull(hostAndPort, "hostAndPort is null");
    int colon = hostAndPort.lastIndexOf(':');
    if (colon <= 0 || colon == hostAndPort.length() - 1) {
      throw new IllegalArgumentException("Invalid peer address: '" + hostAndPort + "' (expected host:port)");
    }
    String host = hostAndPort.substring(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    } else if (host.indexOf(':') >= 0) {
      throw new IllegalArgumentException(
          "Invalid peer address: '" + hostAndPort + "' (expected [ipv6]:port for an IPv6 literal)");
    }
    int port;
    try {
      port = Integer.parseInt(hostAndPort.substring(colon + 1));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("Invalid peer address: '" + hostAndPort + "' (expected host:port)", e);
    }
    return new PeerAddress(host, port);
  }

  /** A resolved socket address (resolves the host name now). */
  InetSocketAddress resolve() {
    return new InetSocketAddress(host, port);
  }

  @Override
  public String toString() {
    return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
  }
}
