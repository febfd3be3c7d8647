package dev.stagecraft.jobs.engine;

import dev.stagecraft.testing.LocalSpark;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/** The engine with its workspace on a real HDFS (MiniDFSCluster: a NameNode and a DataNode in this JVM). */
class HdfsEngineTest extends EngineScenarios {
  static MiniDFSCluster hdfs;

  @BeforeAll
  static void startHdfs() throws Exception {
    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR,
        java.nio.file.Files.createTempDirectory("minidfs").toString());
    conf.set("dfs.replication", "1");
    // Let a client close a file once its last block is committed, instead of polling (400 ms, 800 ms, …) until
    // the DataNode's block report makes it complete: most of a small-file write's time on a one-node cluster.
    conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);
    hdfs = new MiniDFSCluster.Builder(conf).numDataNodes(1).build();
    hdfs.waitActive();
    LocalSpark.get().sparkContext().hadoopConfiguration().set("dfs.replication", "1");
  }

  @AfterAll
  static void stopHdfs() {
    if (hdfs != null) {
      hdfs.shutdown();
    }
  }

  @Override
  String newWorkspace(String name) {
    return "hdfs://127.0.0.1:" + hdfs.getNameNodePort() + "/stagecraft/" + name;
  }
}
