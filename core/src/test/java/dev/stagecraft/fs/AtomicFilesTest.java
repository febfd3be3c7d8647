package dev.stagecraft.fs;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.testing.HadoopStores;
import dev.stagecraft.testing.HadoopStores.Store;
import dev.stagecraft.testing.PlainFileSystem;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Atomic publish and exclusive create on the local file system, a real HDFS (MiniDFSCluster) and a real S3 API
 * (s3proxy in its own process, through S3A). The same cases run on each.
 */
class AtomicFilesTest {
  @RegisterExtension static final HadoopStores STORES = new HadoopStores();

  static Stream<Store> stores() throws Exception {
    return STORES.fresh("atomic");
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void writeReplacesWholeAndLeavesNoTemporaryFiles(Store store) throws Exception {
    FileSystem fs = store.fs();
    Path root = store.root();
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
    assertThat(AtomicFiles.renameIsAtomic(fs)).isEqualTo(!store.isObjectStore());
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void readersNeverSeeAPartialFileWhileAWriterReplacesIt(Store store) throws Exception {
    FileSystem fs = store.fs();
    Path root = store.root();
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

  /**
   * Eight creators start together on one name, 25 rounds: exactly one wins each round, and the file is the winner's.
   * On S3 that is the server's conditional PUT (s3proxy evaluates If-None-Match as it links the object into place).
   */
  @ParameterizedTest(name = "{0}")
  @MethodSource("stores")
  void exactlyOneOfManyConcurrentCreatorsWins(Store store) throws Exception {
    FileSystem fs = store.fs();
    assertThat(AtomicFiles.exclusiveCreateUnsupported(fs, store.root())).as(store.name()).isEmpty();
    ExecutorService pool = Executors.newFixedThreadPool(8);
    try {
      for (int round = 0; round < 25; round++) {
        Path lock = new Path(store.root(), "runs/r/" + round + ".json");
        CyclicBarrier start = new CyclicBarrier(8);
        List<Future<Boolean>> all = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
          byte[] mine = bytes("holder " + i);
          all.add(pool.submit(() -> {
            start.await();
            return AtomicFiles.createExclusive(fs, lock, mine);
          }));
        }
        List<Integer> winners = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
          if (all.get(i).get()) {
            winners.add(i);
          }
        }
        assertThat(winners).as(store.name() + " round " + round).hasSize(1);
        assertThat(text(AtomicFiles.read(fs, lock).orElseThrow())).isEqualTo("holder " + winners.get(0));
        assertThat(AtomicFiles.createExclusive(fs, lock, bytes("late"))).isFalse();
      }
    } finally {
      pool.shutdownNow();
    }
  }

  /** A store without a usable exclusive create is named as such, before anything is written, and refuses to try. */
  @Test
  void aStoreWithoutExclusiveCreateSaysSoAndRefuses(@TempDir java.nio.file.Path dir) throws Exception {
    Configuration conf = new Configuration();
    Path root = PlainFileSystem.register(conf, dir);
    FileSystem fs = root.getFileSystem(conf);
    assertThat(AtomicFiles.exclusiveCreateUnsupported(fs, root)).contains("a plain: store offers no exclusive create "
        + "that Stagecraft can use (only file:, hdfs:, viewfs: and s3a: with conditional writes do)");
    assertThatThrownBy(() -> AtomicFiles.createExclusive(fs, new Path(root, "x"), bytes("x")))
        .isInstanceOf(AtomicFiles.ExclusiveCreateUnsupported.class);
    assertThat(fs.exists(new Path(root, "x"))).isFalse();
  }

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private static String text(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }
}
