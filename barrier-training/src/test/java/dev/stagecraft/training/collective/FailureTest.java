package dev.stagecraft.training.collective;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Timeouts, dead and desynchronised peers, closing: every failure names a rank and nothing hangs. */
@Timeout(60)
class FailureTest {
  /** Operation timeout where a test waits for it to expire. */
  private static final Duration SHORT = Duration.ofMillis(400);
  /** Connect timeout where a test waits for it to expire: long enough for the present ranks on a loaded machine. */
  private static final Duration CONNECT = Duration.ofSeconds(1);
  private static final Duration LONG = Duration.ofSeconds(10);

  @Test
  void connectTimesOutNamingTheRankThatNeverShowsUp() throws Exception {
    try (TestGroup group = TestGroup.bind(3, CONNECT, LONG)) {
      Future<Communicator> rank0 = group.connectAsync(0);
      Future<Communicator> rank1 = group.connectAsync(1); // rank 2 is bound but never connects

      Throwable afterMissing = TestGroup.failureOf(rank0);
      assertThat(afterMissing).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot connect rank 0 of 3 in group '" + group.groupId
              + "': no authenticated connection from rank 2 within 1s");
      assertThat(((CollectiveException) afterMissing).ranks()).containsExactly(2);

      Throwable beforeMissing = TestGroup.failureOf(rank1);
      assertThat(beforeMissing).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessageStartingWith("Cannot connect rank 1 of 3 in group '" + group.groupId + "': rank 2 at "
              + group.peers.get(2) + " did not complete an authenticated connection within 1s (last error: ");
      assertThat(((CollectiveException) beforeMissing).ranks()).containsExactly(2);
      assertThat(group.servers.get(0).isClosed()).as("the communicator closes the listening socket").isTrue();
    }
  }

  @Test
  void connectNamesTheRankWhoseAddressRefusesConnections() throws Exception {
    try (TestGroup group = TestGroup.bind(2, CONNECT, LONG)) {
      group.servers.get(1).close();
      Throwable failure = TestGroup.failureOf(group.connectAsync(0));
      assertThat(failure).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessageContaining("no authenticated connection from rank 1 within 1s")
          .hasMessageContaining("rank 1 at " + group.peers.get(1) + " did not complete an authenticated connection")
          .hasMessageContaining("Connection refused");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(1);
    }
  }

  @Test
  void operationTimesOutNamingTheSilentRankAndTheCommunicatorThenFailsFast() throws Exception {
    try (TestGroup group = TestGroup.connected(2, LONG, SHORT)) {
      Throwable failure = TestGroup.failureOf(group.submit(() -> {
        group.rank(0).allReduceSum(new float[10]);
        return null;
      }));
      assertThat(failure).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot complete allReduceSum #1: no data from rank 1 (" + group.peers.get(1) + ") within 400ms");
      assertThat(((CollectiveException) failure).ranks()).containsExactly(1);

      assertThatThrownBy(group.rank(0)::barrier).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot run barrier: the communicator of rank 0 of 2 in group '" + group.groupId
              + "' failed earlier: no data from rank 1 (" + group.peers.get(1) + ") within 400ms");
      // The silent rank learns why the other one gave up.
      Throwable late = TestGroup.failureOf(group.submit(() -> {
        group.rank(1).barrier();
        return null;
      }));
      assertThat(late).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessageEndingWith("rank 0 reported: no data from rank 1 (" + group.peers.get(1) + ") within 400ms");
    }
  }

  @Test
  void barrierTimesOutNamingTheRankThatNeverArrives() throws Exception {
    // 1 s, not SHORT, on a loaded machine. Rank 1 waits for rank 0's second token, which never comes either: its
    // timeout is longer, or it could expire before rank 0's (both start within a hop of each other).
    try (TestGroup group = TestGroup.bind(3, LONG, Duration.ofSeconds(1))) {
      List<Future<Communicator>> connecting = List.of(group.connectAsync(0), group.connectAsync(1,
          Duration.ofSeconds(3)), group.connectAsync(2));
      for (Future<Communicator> f : connecting) {
        TestGroup.get(f);
      }
      List<Future<Object>> waiting = new ArrayList<>();
      for (int r = 0; r < 2; r++) {
        Communicator c = group.rank(r);
        waiting.add(group.submit(() -> {
          c.barrier();
          return null;
        }));
      }
      Throwable next = TestGroup.failureOf(waiting.get(0));
      assertThat(next).isInstanceOf(CollectiveTimeoutException.class)
          .hasMessage("Cannot complete barrier #1: no data from rank 2 (" + group.peers.get(2) + ") within 1s");
      // Rank 1 waits on rank 0, which waits on rank 2: it reports whichever it learns first, but never hangs.
      Throwable further = TestGroup.failureOf(waiting.get(1));
      assertThat(further).isInstanceOf(CollectiveTimeoutException.class).hasMessageStartingWith(
          "Cannot complete barrier #1: ");
      assertThat(((CollectiveException) further).ranks()).isNotEmpty();
    }
  }

  @Test
  void aRankThatDiesMidOperationIsNamedWithoutWaitingForTheTimeout() throws Exception {
    try (TestGroup group = TestGroup.bind(3, LONG)) {
      Future<Communicator> rank0 = group.connectAsync(0);
      Future<Communicator> rank1 = group.connectAsync(1);
      try (FakeRank rank2 = FakeRank.join(group, 2)) {
        TestGroup.get(rank0);
        TestGroup.get(rank1);
        int length = 3 * 4 * Wire.CHUNK_FLOATS;
        List<Future<Object>> reducing = new ArrayList<>();
        for (int r = 0; r < 2; r++) {
          Communicator c = group.rank(r);
          reducing.add(group.submit(() -> {
            c.allReduceSum(new float[length]);
            return null;
          }));
        }
        // Once rank 1 is in the operation: half a chunk, then the process "dies".
        assertThat(rank2.awaitFrameHeader()).isEqualTo(Wire.ALL_REDUCE_SUM);
        rank2.sendFrame(Wire.ALL_REDUCE_SUM, 1, length, 0, Wire.CHUNK_BYTES, Wire.CHUNK_BYTES / 2);
        long start = System.nanoTime();
        rank2.crash();
        for (Future<Object> f : reducing) {
          Throwable failure = TestGroup.failureOf(f);
          // Rank 0 may learn of the death (from rank 1) before its own thread has started the allReduce.
          assertThat(failure).isInstanceOf(CollectiveException.class)
              .isNotInstanceOf(CollectiveTimeoutException.class)
              .hasMessageContaining("rank 2");
          assertThat(failure.getMessage()).satisfiesAnyOf(
              m -> assertThat(m).startsWith("Cannot complete allReduceSum #1: "),
              m -> assertThat(m).startsWith("Cannot run allReduceSum: the communicator of rank 0 of 3 in group '"
                  + group.groupId + "' failed earlier: "));
          assertThat(((CollectiveException) failure).ranks()).contains(2);
        }
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(LONG.dividedBy(2));
      }
    }
  }

  @Test
  void aRankThatCallsAnotherOperationIsReportedOutOfSync() throws Exception {
    try (TestGroup group = TestGroup.connected(2, LONG)) {
      Future<Object> reducing = group.submit(() -> {
        group.rank(0).allReduceSum(new float[10]);
        return null;
      });
      Future<Object> broadcasting = group.submit(() -> {
        group.rank(1).broadcast(new float[10], 1);
        return null;
      });
      Throwable a = TestGroup.failureOf(reducing);
      Throwable b = TestGroup.failureOf(broadcasting);
      assertThat(a).isInstanceOf(CollectiveException.class).hasMessageStartingWith("Cannot complete allReduceSum #1: ")
          .hasMessageContaining("out of sync with rank");
      assertThat(b).isInstanceOf(CollectiveException.class).hasMessageStartingWith("Cannot complete broadcast #1: ")
          .hasMessageContaining("out of sync with rank");
      assertThat(a.getMessage() + b.getMessage()).containsAnyOf(
          "received broadcast #1 while this rank runs allReduceSum #1",
          "received allReduceSum #1 while this rank runs broadcast #1");
    }
  }

  @Test
  void ranksPassingArraysOfDifferentLengthsAreReported() throws Exception {
    try (TestGroup group = TestGroup.connected(2, LONG)) {
      Future<Object> ten = group.submit(() -> {
        group.rank(0).allReduceSum(new float[10]);
        return null;
      });
      Future<Object> eleven = group.submit(() -> {
        group.rank(1).allReduceSum(new float[11]);
        return null;
      });
      String messages = TestGroup.failureOf(ten).getMessage() + "\n" + TestGroup.failureOf(eleven).getMessage();
      assertThat(messages).containsAnyOf(
          "out of sync with rank 1: rank 1 called allReduceSum #1 with 11 floats, this rank with 10",
          "out of sync with rank 0: rank 0 called allReduceSum #1 with 10 floats, this rank with 11");
    }
  }

  @Test
  void aFrameWithTheWrongSequenceNumberIsReportedNamingTheSender() throws Exception {
    try (TestGroup group = TestGroup.bind(2, LONG)) {
      Future<Communicator> rank0 = group.connectAsync(0);
      try (FakeRank rank1 = FakeRank.join(group, 1)) {
        Communicator c = TestGroup.get(rank0);
        rank1.sendFrame(Wire.BARRIER, 7, 0, 0, 0, 0);
        assertThatThrownBy(c::barrier).isInstanceOf(CollectiveException.class)
            .hasMessage("Cannot complete barrier #1: out of sync with rank 1: received barrier #7 while this rank "
                + "runs barrier #1")
            .extracting(e -> ((CollectiveException) e).ranks()).isEqualTo(List.of(1));
      }
    }
  }

  @Test
  void closingFromAnotherThreadAbortsABlockedOperation() throws Exception {
    try (TestGroup group = TestGroup.connected(2, LONG)) {
      Future<Object> blocked = group.submit(() -> {
        group.rank(0).allReduceSum(new float[100]);
        return null;
      });
      assertThatThrownBy(() -> blocked.get(200, TimeUnit.MILLISECONDS)).isInstanceOf(TimeoutException.class);
      group.rank(0).close();
      Throwable failure = TestGroup.failureOf(blocked);
      assertThat(failure).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete allReduceSum #1: the communicator of rank 0 was closed");
      assertThat(((CollectiveException) failure).ranks()).isEmpty();

      // Rank 1 (which never joined the allReduce) fails on its next call, naming rank 0, instead of hanging.
      Throwable neighbour = TestGroup.failureOf(group.submit(() -> {
        group.rank(1).barrier();
        return null;
      }));
      assertThat(neighbour).isInstanceOf(CollectiveException.class).hasMessageContaining("rank 0");
    }
  }

  @Test
  void interruptingABlockedOperationFailsItAtOnceAndTellsTheNeighbour() throws Exception {
    try (TestGroup group = TestGroup.connected(2, LONG)) {
      java.util.concurrent.atomic.AtomicReference<Throwable> thrown = new java.util.concurrent.atomic.AtomicReference<>();
      Thread op = new Thread(() -> {
        try {
          group.rank(0).allReduceSum(new float[100]); // rank 1 never joins: blocks waiting for its data
        } catch (Throwable t) {
          thrown.set(t);
        }
      }, "interrupted-rank-0");
      op.start();
      await().atMost(Duration.ofSeconds(5)).until(() -> op.getState() == Thread.State.TIMED_WAITING
          || op.getState() == Thread.State.RUNNABLE && op.getStackTrace().length > 0 && isSelecting(op));
      op.interrupt();
      op.join(LONG.toMillis() / 2); // a read that ignored the interrupt would block until the 10 s timeout
      assertThat(op.isAlive()).as("the interrupted operation returned").isFalse();
      assertThat(thrown.get()).isInstanceOf(CollectiveException.class)
          .hasMessageStartingWith("Cannot complete allReduceSum #1: ")
          .hasMessageContaining("interrupted while");

      Throwable neighbour = TestGroup.failureOf(group.submit(() -> {
        group.rank(1).barrier();
        return null;
      }));
      assertThat(neighbour).isInstanceOf(CollectiveException.class).hasMessageContaining("rank 0");
    }
  }

  private static boolean isSelecting(Thread thread) {
    for (StackTraceElement frame : thread.getStackTrace()) {
      if (frame.getMethodName().equals("awaitReadable")) {
        return true;
      }
    }
    return false;
  }

  @Test
  void aNeighbourThatClosedIsReportedByTheNextOperation() throws Exception {
    try (TestGroup group = TestGroup.connected(2, LONG)) {
      group.rank(1).close();
      assertThatThrownBy(group.rank(0)::barrier).isInstanceOf(CollectiveException.class)
          .hasMessage("Cannot complete barrier #1: rank 1 closed its communicator")
          .extracting(e -> ((CollectiveException) e).ranks()).isEqualTo(List.of(1));
    }
  }

  @Test
  void closingRightAfterTheLastOperationDoesNotFailSlowerRanks() throws Exception {
    for (int attempt = 0; attempt < 5; attempt++) {
      try (TestGroup group = TestGroup.connected(3, LONG)) {
        float[][] inputs = AllReduceTest.randomInputs(3, 3 * Wire.CHUNK_FLOATS + 5, attempt);
        List<float[]> results = group.onEachRank(c -> {
          float[] data = inputs[c.rank()].clone();
          c.allReduceSum(data);
          c.close();
          return data;
        });
        AllReduceTest.assertSums(inputs, results);
      }
    }
  }

  @Test
  void closeIsIdempotentStopsItsThreadsAndLaterCallsFail() throws Exception {
    TestGroup group = TestGroup.connected(2, LONG);
    String threadPrefix = "stagecraft-collective-" + group.groupId + "-";
    assertThat(threadsNamed(threadPrefix)).as("a watcher per rank").hasSize(2);
    group.onEachRank(c -> {
      c.barrier();
      return null;
    });
    group.rank(0).close();
    group.rank(0).close();
    assertThatThrownBy(() -> group.rank(0).allReduceSum(new float[1])).isInstanceOf(IllegalStateException.class)
        .hasMessage("Cannot run allReduceSum: the communicator of rank 0 of 2 in group '" + group.groupId
            + "' is closed");
    group.close();
    await().atMost(Duration.ofSeconds(5)).until(() -> threadsNamed(threadPrefix).isEmpty());
  }

  private static List<String> threadsNamed(String prefix) {
    return Thread.getAllStackTraces().keySet().stream()
        .filter(Thread::isAlive)
        .map(Thread::getName)
        .filter(name -> name.startsWith(prefix))
        .toList();
  }
}
