package dev.stagecraft.fs;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Atomic publish and exclusive create on the local file system and on a real HDFS (MiniDFSCluster). */
class AtomicFilesTest {
  static MiniDFSCluster hdfs;

  @BeforeAll
  static void start() throws Exception {
    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, Files.createTempDirectory("minidfs").toString());
    conf.set("dfs.replication", "1");
    // Let a client close a file once its last block is committed, instead of polling (400 ms, 800 ms, …) until
    // the DataNode's block report makes it complete: most of a small-file write's time on a one-node cluster.
    conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);
    hdfs = new MiniDFSCluster.Builder(conf).numDataNodes(1).build();
    hdfs.waitActive();
  }

  @AfterAll
  static void stop() {
    hdfs.shutdown();
  }

  static List<Path> roots() throws Exception {
    return List.of(
        new Path(Files.createTempDirectory("atomic").toUri()),
        new Path("hdfs://127.0.0.1:" + hdfs.getNameNodePort() + "/atomic-" + System.nanoTime()));
  }

  static FileSystem fs(Path p) throws Exception {
    Configuration conf = new Configuration();
    conf.set("dfs.replication", "1");
    return p.getFileSystem(conf);
  }

  @Test
  void writeReplacesWholeAndLeavesNoTemporaryFiles() throws Exception {
    for (Path root : roots()) {
      FileSystem fs = fs(root);
      Path f = new Path(root, "dir/ledger.json");
      assertThat(AtomicFiles.read(fs, f)).isEmpty();
      AtomicFiles.write(fs, f, bytes("first"));
      AtomicFiles.write(fs, f, bytes("second, longer"));
      assertThat(text(AtomicFiles.read(fs, f).orElseThrow())).isEqualTo("second, longer");
      List<String> names = new ArrayList<>();
      for (FileStatus s : fs.listStatus(f.getParent())) {
        names.add(s.getPath().getName());
      }
      assertThat(names).as(root.toString()).containsExactly("ledger.json");
      assertThat(AtomicFiles.renameIsAtomic(fs)).isTrue();
    }
  }

  @Test
  void readersNeverSeeAPartialFileWhileAWriterReplacesIt() throws Exception {
    for (Path root : roots()) {
      FileSystem fs = fs(root);
      Path f = new Path(root, "state.json");
      byte[] a = new byte[64 * 1024];
      byte[] b = new byte[64 * 1024];
      java.util.Arrays.fill(a, (byte) 'a');
      java.util.Arrays.fill(b, (byte) 'b');
      AtomicFiles.write(fs, f, a);
      CompletableFuture<Void> writer = CompletableFuture.runAsync(() -> {
        try {
          for (int i = 0; i < 30; i++) {
            AtomicFiles.write(fs, f, i % 2 == 0 ? b : a);
          }
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      int reads = 0;
      while (!writer.isDone() || reads < 5) {
        byte[] seen = AtomicFiles.read(fs, f).orElseThrow(() -> new AssertionError("file vanished"));
        assertThat(seen).hasSize(a.length);
        assertThat(seen[0]).isEqualTo(seen[seen.length - 1]);
        reads++;
      }
      writer.get();
    }
  }

  @Test
  void exactlyOneOfManyConcurrentCreatorsWins() throws Exception {
    for (Path root : roots()) {
      FileSystem fs = fs(root);
      Path lock = new Path(root, "runs/r/run.lease");
      AtomicInteger winners = new AtomicInteger();
      List<CompletableFuture<Void>> all = new ArrayList<>();
      for (int i = 0; i < 8; i++) {
        int me = i;
        all.add(CompletableFuture.runAsync(() -> {
          try {
            if (AtomicFiles.createExclusive(fs, lock, bytes("holder " + me))) {
              winners.incrementAndGet();
            }
          } catch (Exception e) {
            throw new RuntimeException(e);
          }
        }));
      }
      CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).get();
      assertThat(winners.get()).as(root.toString()).isEqualTo(1);
      assertThat(text(AtomicFiles.read(fs, lock).orElseThrow())).startsWith("holder ");
      assertThat(AtomicFiles.createExclusive(fs, lock, bytes("late"))).isFalse();
      fs.delete(lock, false);
      assertThat(AtomicFiles.createExclusive(fs, lock, bytes("after release"))).isTrue();
    }
  }

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private static String text(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }
}
