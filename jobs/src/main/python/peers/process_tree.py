"""CPU seconds and peak memory of this process and all its descendants over a window, for the peer benchmarks.

A peer does its work in other processes: the JVM that pyspark starts, Python workers, torchrun and its workers, Ray's
actors. Their CPU must count, including processes that exit inside the window, whose time a sampler loses.

Two measures, and the larger one is reported:
* rusage: Linux adds the final CPU time of every child a process has waited for to that process's "children" times
  (getrusage RUSAGE_CHILDREN; psutil's cpu_times().children_user/children_system), recursively when each parent waits
  for its own children (pyspark's wrapper, torchrun, the JVM launcher script do). The tree's total at a moment is, over
  this process and every live descendant (zombies included), its own user+system time plus its reaped children's; the
  window's CPU is that total at the end minus the same at the start. It misses processes nobody waits for (Ray's
  actors are reparented away) and processes reparented out of the tree.
* sampled: a sampler thread walks the tree every `interval` seconds and keeps the last seen CPU time of every process
  (by pid and start time); the window's CPU is the sum of each one's growth. It misses at most one interval of each
  exited process.
The sampler's own CPU (a few percent of one core) is taken off both.

Memory: the largest sum of RSS over the live tree at a sample. RSS counts shared library pages (torch's are large,
Ray maps its object store into every worker) once per process; PSS splits each shared page among the processes
mapping it, and is read every `pss_every` samples (smaps_rollup of a process mapping Ray's store takes ~3 ms).
"""

import threading
import time


class ProcessTreeMeter:
    def __init__(self, interval=0.2, pss_every=10):
        import psutil

        self.psutil = psutil
        self.root = psutil.Process()
        self.interval = interval
        self.pss_every = pss_every

    def _tree(self):
        procs = [self.root]
        try:
            procs += self.root.children(recursive=True)
        except self.psutil.Error:
            pass
        return procs

    def _sample(self, with_pss=True):
        """Reads every process of the tree: updates the last seen CPU and the peaks; returns the rusage total."""
        rusage = rss = pss = 0.0
        for p in self._tree():
            try:
                with p.oneshot():  # one read of /proc/PID/stat for all of these
                    key = (p.pid, p.create_time())
                    t = p.cpu_times()
                    zombie = p.status() == self.psutil.STATUS_ZOMBIE
                    mem = 0 if zombie else p.memory_info().rss
                    if mem > self.peak_by_process.get(key, (0, ""))[0]:
                        self.peak_by_process[key] = (mem, " ".join(p.cmdline()[:4])[:100])
            except self.psutil.Error:
                continue  # gone between listing and reading: its last sample, or its parent's rusage, holds it
            rss += mem
            self.seen[key] = t.user + t.system
            rusage += t.user + t.system + t.children_user + t.children_system
            if with_pss and not zombie:
                try:
                    pss += getattr(p.memory_full_info(), "pss", 0)
                except self.psutil.Error:
                    pass
        self.peak_rss = max(self.peak_rss, rss)
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)
        return rusage

    def _loop(self):
        start = time.thread_time()
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            self._sample(with_pss=n % self.pss_every == 0)
            self.sampler_cpu = time.thread_time() - start

    def start(self):
        self.seen = {}
        self.peak_by_process = {}
        self.peak_rss = self.peak_pss = 0.0
        self.sampler_cpu = 0.0
        self.rusage_start = self._sample()
        self.seen_at_start = dict(self.seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-tree-meter", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()
        total = self._sample()
        rusage = total - self.rusage_start - self.sampler_cpu
        sampled = sum(v - self.seen_at_start.get(k, 0.0) for k, v in self.seen.items()) - self.sampler_cpu
        return {"cpu_seconds": max(rusage, sampled), "cpu_seconds_rusage": rusage, "cpu_seconds_sampled": sampled,
                "cpu_seconds_total": total, "sampler_cpu_seconds": self.sampler_cpu,
                "peak_rss_mb": self.peak_rss / 2 ** 20, "peak_pss_mb": self.peak_pss / 2 ** 20,
                "processes_seen": len(self.seen),
                "peak_rss_by_process": sorted(((v[0] / 2 ** 20, v[1]) for v in self.peak_by_process.values()),
                                              reverse=True)}
