package dev.stagecraft.testing;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/**
 * A real HDFS in a JVM of its own, for tests whose clients run on other {@link HostNetwork} hosts: a MiniDFSCluster
 * (a NameNode on a fixed port and one DataNode) run as {@code HdfsServer DIR ADDRESS PORT} in a host, whose address
 * is {@code ADDRESS}. It prints {@value #READY} and the file system's URI once it is up, and runs until killed.
 *
 * <p>MiniDFSCluster names its NameNode 127.0.0.1, so the NameNode listens on every address of the host (client RPC
 * on PORT, service RPC on PORT + 1), and the DataNode registers through the service port at the host's address: the
 * NameNode then hands clients that address for it.
 *
 * <p>What the store holds is also visible from outside the host, even while its link is cut: every
 * {@value #REFRESH_MS} ms it writes {@code DIR/listing.txt} (each file's path and length, files under construction
 * included) and copies every JSON file up to {@value #MIRRORED_BYTES} bytes (manifests, ledgers) to
 * {@code DIR/mirror/PATH}, deleting copies of files that are gone.
 */
public final class HdfsServer {
  public static final String READY = "HDFS ready at ";
  static final int REFRESH_MS = 200;
  static final long MIRRORED_BYTES = 64 * 1024;

  private HdfsServer() {}

  /** What a client on another host needs besides the URI. */
  public static Map<String, String> clientSettings() {
    return Map.of("dfs.replication", "1");
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 3) {
      throw new IllegalArgumentException("Usage: HdfsServer DIR ADDRESS PORT");
    }
    Path dir = Path.of(args[0]);
    String address = args[1];
    int port = Integer.parseInt(args[2]);
    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, dir.resolve("data").toString());
    conf.set("dfs.replication", "1");
    // Let a client close a file once its last block is committed, instead of polling until a block report.
    conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);
    conf.set("dfs.namenode.rpc-bind-host", "0.0.0.0");
    // The DataNode reaches the NameNode at the host's address (its service RPC port), so that the NameNode records the
    // DataNode's address as that, not 127.0.0.1, and hands it to clients.
    conf.set("dfs.namenode.servicerpc-address", address + ":" + (port + 1));
    conf.set("dfs.namenode.servicerpc-bind-host", "0.0.0.0");
    conf.set("dfs.datanode.address", "0.0.0.0:0");
    conf.set("dfs.datanode.ipc.address", "0.0.0.0:0");
    conf.set("dfs.datanode.http.address", "0.0.0.0:0");
    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf).nameNodePort(port).numDataNodes(1)
        .checkDataNodeAddrConfig(true).build();
    cluster.waitActive();
    System.out.println(READY + "hdfs://" + address + ":" + port);
    System.out.flush();
    FileSystem fs = cluster.getFileSystem();
    Map<String, String> mirrored = new HashMap<>();
    while (true) {
      try {
        refresh(fs, dir, mirrored);
      } catch (IOException e) {
        System.out.println("HdfsServer: cannot refresh the listing: " + e);
      }
      Thread.sleep(REFRESH_MS);
    }
  }

  private static void refresh(FileSystem fs, Path dir, Map<String, String> mirrored) throws IOException {
    List<String> lines = new ArrayList<>();
    Map<String, String> seen = new HashMap<>();
    Path mirror = dir.resolve("mirror");
    for (FileStatus f : files(fs, new org.apache.hadoop.fs.Path("/"))) {
      String path = f.getPath().toUri().getPath();
      lines.add(path + "\t" + f.getLen());
      // Only JSON files published by a rename (ledgers, manifests): never one still being written, whose read can
      // hang while its block is recovered after a client was cut off.
      String name = f.getPath().getName();
      if (f.getLen() <= MIRRORED_BYTES && name.endsWith(".json") && !name.startsWith(".")) {
        String version = f.getLen() + "@" + f.getModificationTime();
        seen.put(path, version);
        if (!version.equals(mirrored.get(path))) {
          Path copy = mirror.resolve(path.substring(1));
          Files.createDirectories(copy.getParent());
          Path tmp = copy.resolveSibling("." + copy.getFileName() + ".part");
          try (InputStream in = fs.open(f.getPath())) {
            Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            Files.move(tmp, copy, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            mirrored.put(path, version);
          } catch (IOException e) {
            // deleted or replaced meanwhile: the next round copies what is there then
          }
        }
      }
    }
    for (String gone : new ArrayList<>(mirrored.keySet())) {
      if (!seen.containsKey(gone)) {
        Files.deleteIfExists(mirror.resolve(gone.substring(1)));
        mirrored.remove(gone);
      }
    }
    Path listing = dir.resolve("listing.txt");
    Path tmp = dir.resolve(".listing.txt.part");
    Files.write(tmp, lines);
    Files.move(tmp, listing, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** Every file under {@code root}; a folder deleted while it is walked (checkpoint retention) is skipped. */
  private static List<FileStatus> files(FileSystem fs, org.apache.hadoop.fs.Path root) throws IOException {
    List<FileStatus> out = new ArrayList<>();
    java.util.ArrayDeque<org.apache.hadoop.fs.Path> dirs = new java.util.ArrayDeque<>(List.of(root));
    while (!dirs.isEmpty()) {
      FileStatus[] children;
      try {
        children = fs.listStatus(dirs.pop());
      } catch (java.io.FileNotFoundException e) {
        continue;
      }
      for (FileStatus c : children) {
        if (c.isDirectory()) {
          dirs.push(c.getPath());
        } else {
          out.add(c);
        }
      }
    }
    return out;
  }

  /** The paths in a listing written by a server in {@code dir} (empty before the first). */
  public static List<String> listing(Path dir) throws IOException {
    Path listing = dir.resolve("listing.txt");
    if (!Files.exists(listing)) {
      return List.of();
    }
    try (Stream<String> lines = Files.lines(listing)) {
      return lines.map(l -> l.substring(0, l.indexOf('\t'))).toList();
    }
  }
}
