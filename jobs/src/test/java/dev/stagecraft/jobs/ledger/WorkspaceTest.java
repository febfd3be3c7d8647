package dev.stagecraft.jobs.ledger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.stagecraft.testing.PlainFileSystem;
import java.nio.file.Path;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorkspaceTest {
  @TempDir Path dir;

  @Test
  void aWorkspaceWhoseStoreCannotCreateExclusivelyIsRefusedNamingTheSettingThatHelps() throws Exception {
    Configuration conf = new Configuration();
    String plain = PlainFileSystem.register(conf, dir.resolve("ws")).toString();
    Workspace ws = new Workspace(plain, conf);
    assertThatThrownBy(ws::checkLedgerStore).hasMessage("Cannot run in workspace " + plain + ": its ledger store "
        + plain + " cannot create a file only if it is absent (a plain: store offers no exclusive create that "
        + "Stagecraft can use (only file:, hdfs:, viewfs: and s3a: with conditional writes do)), so two processes of "
        + "one run could both commit. Keep ledgers and leases on a store that can: set the Hadoop property "
        + "stagecraft.ledger.store (--conf spark.hadoop.stagecraft.ledger.store=… or core-site.xml) to an HDFS or "
        + "file: path that every process of the run reaches, e.g. hdfs://namenode:8020/stagecraft/ledgers");

    // With a ledger store beside it, ledgers and leases go there, under the workspace's own path.
    conf.set(Workspace.LEDGER_STORE_PROPERTY, dir.resolve("ledgers").toString());
    Workspace split = new Workspace(plain, conf);
    split.checkLedgerStore();
    String under = dir.resolve("ledgers").toString() + "/plain" + dir.resolve("ws");
    assertThat(split.ledgerDir("r1").toUri().getPath()).isEqualTo(under + "/runs/r1/ledger");
    assertThat(split.runLease("r1").toUri().getPath()).isEqualTo(under + "/runs/r1/run.lease");
    assertThat(split.runDir("r1").toString()).as("outputs stay in the workspace").isEqualTo(plain + "/runs/r1");
    new LedgerStore(split).update("r1", none -> LedgerStoreTest.fresh("r1"));
    assertThat(dir.resolve("ledgers/plain" + dir.resolve("ws") + "/runs/r1/ledger/0000000001.json")).exists();
  }
}
