package dev.stagecraft.jobs.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/** What a benchmark reads of processes on Linux: CPU time and peak resident memory. Elsewhere the figures are 0. */
final class Procs {
  /** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux architecture Spark runs on). */
  static final int CLOCK_TICKS = 100;

  private Procs() {}

  /** This JVM's CPU time so far (every thread, Spark's included). */
  static Duration cpuTime() {
    return ProcessHandle.current().info().totalCpuDuration().orElse(Duration.ZERO);
  }

  /** User + system CPU seconds of this process's waited-for descendants ({@code /proc/self/stat}'s cutime + cstime). */
  static double childrenCpuSeconds() {
    try {
      String stat = Files.readString(Path.of("/proc/self/stat"));
      // Fields after the command (which may hold spaces) start at the state, field 3; cutime and cstime are 16, 17.
      String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
      return (Long.parseLong(f[13]) + Long.parseLong(f[14])) / (double) CLOCK_TICKS;
    } catch (IOException | RuntimeException e) {
      return 0;
    }
  }

  /** Resets the kernel's peak-RSS mark of this process ("5" to /proc/self/clear_refs). */
  static void resetPeakRss() {
    try {
      Files.writeString(Path.of("/proc/self/clear_refs"), "5");
    } catch (IOException | RuntimeException e) {
      // Not Linux: the peak is then the process's lifetime peak.
    }
  }

  /** This process's peak RSS in MiB. */
  static double peakRssMb() {
    return peakRssMb(Path.of("/proc/self/status"));
  }

  /** The peak RSS (VmHWM) in MiB of the process whose {@code /proc/PID/status} this is; 0 when it is gone. */
  static double peakRssMb(Path status) {
    try {
      for (String l : Files.readAllLines(status)) {
        if (l.startsWith("VmHWM:")) {
          return Long.parseLong(l.replaceAll("\\D", "")) / 1024.0;
        }
      }
    } catch (IOException | RuntimeException e) {
      // gone, or not Linux
    }
    return 0;
  }
}
