#!/usr/bin/env python3
"""Peer side of the training benchmark: PyTorch DDP launched by Spark's TorchDistributor.

What a Spark 3.5 user would pick instead of Stagecraft's `train` step to fit a small model on a Parquet table:
`pyspark.ml.torch.distributor.TorchDistributor`, which starts `torchrun` (torch.distributed.run) and runs a
training function in every process of a DDP group. Used as its API documentation describes
(https://spark.apache.org/docs/3.5.5/api/python/reference/api/pyspark.ml.torch.distributor.TorchDistributor.html):
a picklable training function, its imports inside it, `init_process_group` with the gloo backend on CPU, the
model wrapped in DistributedDataParallel, and the function's return value handed back by `run()`.

Usage
-----
    python train_torch_distributor.py --train TRAIN.parquet --validation VAL.parquet \
        --model mlp64|logistic --epochs E --global-batch B --lr LR --seed S --workers 2 --out DIR

The last stdout line is one JSON object (everything else goes to stderr):

    {"side": "torch_distributor", "model", "epochs", "global_batch", "lr", "seed", "workers",
     "wall_seconds", "cpu_seconds", "peak_rss_mb", "final_val_accuracy",
     "curve": [{"epoch", "seconds", "val_accuracy", "train_loss"}, ...],
     "versions": {"torch", "pyspark", "numpy", "pandas", "pyarrow"}, "doc": URL,
     "startup": {...}, "model_saved_seconds", "model_path", "train_rows", "validation_rows", "peak_pss_mb",
     "process_tree_totals": {...}}

`curve[i].seconds` is measured from the call to `TorchDistributor.run` to the end of epoch i's validation, so a
caller can read off the time to a target accuracy. The keys after "doc" are extras (see Timing).

Data
----
Parquet (a file or a Spark output folder of part files) with `label` INT (0/1) and `features` ARRAY<DOUBLE>, every
array of the same length (123 for a9a). To make the benchmark's inputs from the a9a example, read
`jobs/examples/a9a/data/a9a.libsvm` and `a9a.t.libsvm` with Spark's libsvm reader (option numFeatures=123; a9a's
labels are already 0/1 there, a -1/+1 file would be mapped with `label > 0`), select `CAST(label AS INT)` and
`pyspark.ml.functions.vector_to_array(features)`, replicate the training split 10 times (325,600 rows) and write
both with `DataFrame.write.parquet`.

How TorchDistributor is used
----------------------------
* `TorchDistributor(num_processes=W, local_mode=True, use_gpu=False).run(train_fn, cfg)`. In local mode nothing
  runs in Spark tasks: the distributor pickles `train_fn` with cloudpickle, writes a small launcher file and runs
  `python -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=W` on the driver (through pyspark's
  wrapper process, which kills torchrun if the driver dies). The active SparkSession is only consulted for its
  configuration; its JVM idles during training (its CPU and memory are still counted, see Timing).
* Data reaches the workers from storage, not through Spark: each rank reads its contiguous share of the training
  rows (rank r of W takes rows [r*N/W, (r+1)*N/W)) with pyarrow, decoding only the row groups that overlap it, in
  batches and no further than its last row, and likewise its share of the validation rows.
  (`TorchDistributor._train_on_dataframe`, which would feed Spark partitions to the workers, is private in 3.5 and
  refuses local mode.)
* Standardisation: every rank sums its rows, the sums are all-reduced (gloo), then the squared deviations from the
  global mean likewise: the training set's mean and population standard deviation (a std of 0 becomes 1), in float64,
  applied to training and validation features. This happens inside the timed region, as Stagecraft's train step
  computes its standardisation inside its own timing.
* Model `mlp64` = Linear(F,64) -> ReLU -> Linear(64,1), `logistic` = Linear(F,1); BCEWithLogitsLoss; Adam(lr);
  `torch.manual_seed(seed)` before building the model on every rank (DDP also broadcasts rank 0's parameters);
  per-rank batch = global batch / W, so DDP's gradient average equals the global-batch gradient; one intra-op thread
  per worker (`torch.set_num_threads(1)`); each rank shuffles its share every epoch with a torch.Generator seeded
  with (seed, rank). Every rank runs the same number of steps per epoch (a rank with one row fewer repeats one).
* Per-epoch metrics come back to the driver as `run()`'s return value: after each epoch every rank evaluates its
  validation share (predicted 1 when sigmoid(logit) >= 0.5) and the sums of training loss, rows, correct
  predictions and validation rows are all-reduced, so every rank holds the same curve. Awkward detail: in local
  mode EVERY torchrun process writes its return value to the same output file (pyspark 3.5.5's generated launcher),
  so ranks returning different objects would race; rank 0's result is therefore broadcast and all ranks return
  byte-identical objects.
* Output: rank 0 saves `model.pt` (the model's state_dict) and `standardisation.pt` (mean, std) in --out. pyspark's
  torchrun wrapper exits 0 whatever torchrun's exit code (a worker that crashes after writing its result goes
  unnoticed), so the script checks for the saved model and rank 0's result rather than trusting the exit.
* torchrun's and the workers' output is copied by the distributor to the driver's sys.stdout; it is redirected to
  stderr here so that the JSON line is the only stdout.

Timing
------
* wall_seconds: from the call to `TorchDistributor.run` until it returns, i.e. after rank 0 saved the model and the
  worker processes exited (`model_saved_seconds` is the moment the save finished, as rank 0 saw it; the difference
  is the workers' and torchrun's exit). The Spark session is started before the clock starts.
* cpu_seconds: CPU (user + system) over the same window of this process and ALL its descendants: the Spark JVM,
  pyspark's torchrun wrapper, torchrun and its workers. See ProcessTreeMeter for how exited processes are counted.
* peak_rss_mb: the largest sum of RSS over the live process tree, sampled during the window (ProcessTreeMeter). RSS counts
  the shared pages of libraries (torch's are large) once per process; peak_pss_mb sums proportional set sizes
  instead, each shared page split among the processes mapping it. Per-process peaks are logged to stderr.
* startup: seconds from `run()` to: the training function starting in rank 0 (`function_entered`: pickling, the
  wrapper, torchrun and worker processes started, torch imported by torchrun, the function unpickled), its imports
  done (`imports_done`: torch, numpy, pyarrow in the worker), the gloo group formed (`process_group_ready`), data read
  and standardised (`data_ready`), and the first optimiser step done (`first_step_done`; PyTorch's first
  `Optimizer.step` imports torch._dynamo, which takes seconds). TorchDistributor's own start-up cost is up to
  `process_group_ready`.
* run_called_seconds: seconds from this script's start to the `run()` call (Python imports, the Spark session): add
  it to a curve point's seconds for the time from the process's start, as a whole application is timed.
* process_tree_totals: wall and CPU seconds since this script started, Spark session start-up included.

Environment: Python 3.11 with pyspark==3.5.5, torch (CPU use only), numpy, pandas, pyarrow and psutil, as in the venv
that `bin/peer-env` prints; Java 17 for the Spark JVM.
"""

import time

SCRIPT_STARTED = time.time()  # first, so the whole process's figures count its imports

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from importlib import metadata  # noqa: E402

from process_tree import ProcessTreeMeter

DOC_URL = ("https://spark.apache.org/docs/3.5.5/api/python/reference/api/"
           "pyspark.ml.torch.distributor.TorchDistributor.html")


def log(msg):
    print(f"[train_torch_distributor] {msg}", file=sys.stderr, flush=True)


def train_fn(cfg):
    """Runs in every torchrun worker process (cloudpickled by TorchDistributor): DDP training on this rank's share.

    Imports are inside the function, as the TorchDistributor documentation recommends; the function uses no global
    of this module, so it unpickles in a fresh interpreter.
    """
    import time

    t0 = cfg["t0"]
    marks = {"function_entered": time.time() - t0}

    import math
    import os
    import sys

    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    marks["imports_done"] = time.time() - t0
    torch.set_num_threads(1)
    dist.init_process_group(backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    marks["process_group_ready"] = time.time() - t0

    def say(msg):
        if rank == 0:
            print(f"[rank 0] {msg}", file=sys.stderr, flush=True)

    def parquet_files(path):
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path)
                           if n.endswith(".parquet") and not n.startswith(("_", ".")))
            return [os.path.join(path, n) for n in names]
        return [path]

    def read_share(path):
        """This rank's contiguous share of the rows: (features float64 [n, F], labels float32 [n, 1], total rows)."""
        groups = []  # (opened file, row group, rows) in file order; each file opened once
        for f in parquet_files(path):
            pf = pq.ParquetFile(f)
            groups += [(pf, g, pf.metadata.row_group(g).num_rows) for g in range(pf.metadata.num_row_groups)]
        total = sum(n for _, _, n in groups)
        lo, hi = rank * total // world, (rank + 1) * total // world
        tables, start = [], 0
        for pf, g, n in groups:
            if start >= hi:
                break
            if max(lo, start) < min(hi, start + n):
                # Stream the row group in batches, keeping only this rank's rows: a large row group (Spark writes
                # up to 128 MB compressed each, and a9a's 0/1 features compress ~100x) is never held whole.
                pos = start
                for batch in pf.iter_batches(batch_size=65536, row_groups=[g], columns=["label", "features"]):
                    a, b = max(lo, pos), min(hi, pos + batch.num_rows)
                    if a < b:
                        tables.append(batch.slice(a - pos, b - a))
                    pos += batch.num_rows
                    if pos >= hi:
                        break
            start += n
        feats, labels = [], []
        width = None
        for t in tables:
            col = t.column("features")
            if col.null_count:
                raise ValueError(f"{path}: null features")
            lengths = pc.list_value_length(col)
            lmin, lmax = pc.min(lengths).as_py(), pc.max(lengths).as_py()
            if lmin != lmax or (width is not None and lmin != width):
                raise ValueError(f"{path}: feature arrays of different lengths ({lmin}..{lmax})")
            width = lmin
            feats.append(col.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, width))
            label = t.column("label")
            lo_label, hi_label = pc.min(label).as_py(), pc.max(label).as_py()
            if lo_label is None or lo_label < 0 or hi_label > 1:
                raise ValueError(f"{path}: labels must be 0 or 1 for the binary cross-entropy (got "
                                 f"{lo_label}..{hi_label}; map -1/+1 labels with label > 0)")
            labels.append(label.to_numpy().astype(np.float32))
        if not feats:
            raise ValueError(f"{path}: rank {rank} of {world} got no rows ({total} in all)")
        x = np.concatenate(feats)
        y = np.concatenate(labels).reshape(-1, 1)
        return x, y, total

    x_np, y_np, n_train = read_share(cfg["train"])
    xv_np, yv_np, n_val = read_share(cfg["validation"])
    n_features = x_np.shape[1]
    if xv_np.shape[1] != n_features:
        raise ValueError(f"validation has {xv_np.shape[1]} features, training {n_features}")

    # Standardisation with the whole training set's mean and population std (all-reduced sums, float64).
    sums = torch.from_numpy(x_np.sum(axis=0))
    dist.all_reduce(sums)
    mean = sums / n_train
    sq = torch.from_numpy(((x_np - mean.numpy()) ** 2).sum(axis=0))
    dist.all_reduce(sq)
    std = torch.sqrt(sq / n_train)
    std[std == 0] = 1.0
    mean_np, std_np = mean.numpy(), std.numpy()
    x = torch.from_numpy(((x_np - mean_np) / std_np).astype(np.float32))
    xv = torch.from_numpy(((xv_np - mean_np) / std_np).astype(np.float32))
    y, yv = torch.from_numpy(y_np), torch.from_numpy(yv_np)
    del x_np, xv_np
    marks["data_ready"] = time.time() - t0
    say(f"{n_train} training rows ({x.shape[0]} on this rank), {n_val} validation rows, {n_features} features; "
        f"data ready at {marks['data_ready']:.2f}s")

    torch.manual_seed(cfg["seed"])
    if cfg["model"] == "mlp64":
        model = torch.nn.Sequential(torch.nn.Linear(n_features, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    else:
        model = torch.nn.Linear(n_features, 1)
    ddp = DDP(model)  # CPU: no device_ids; gradients are averaged over the gloo group
    optimizer = torch.optim.Adam(ddp.parameters(), lr=cfg["lr"])
    loss_fn = torch.nn.BCEWithLogitsLoss()

    per_rank_batch = cfg["global_batch"] // world
    share_max = -(-n_train // world)  # the largest share; every rank runs as many steps
    steps = math.ceil(share_max / per_rank_batch)
    n_local = x.shape[0]
    gen = torch.Generator()
    gen.manual_seed(cfg["seed"] * 1000003 + rank)

    curve = []
    for epoch in range(1, cfg["epochs"] + 1):
        ddp.train()
        perm = torch.randperm(n_local, generator=gen)
        if n_local < share_max:
            perm = torch.cat([perm, perm[: share_max - n_local]])
        loss_sum = torch.zeros((), dtype=torch.float64)
        for k in range(steps):
            idx = perm[k * per_rank_batch:(k + 1) * per_rank_batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * idx.numel()
            if "first_step_done" not in marks:
                marks["first_step_done"] = time.time() - t0
        model.eval()
        with torch.no_grad():
            correct = ((model(xv) >= 0) == (yv >= 0.5)).sum().double()
        totals = torch.stack([loss_sum, torch.tensor(float(perm.numel()), dtype=torch.float64),
                              correct, torch.tensor(float(xv.shape[0]), dtype=torch.float64)])
        dist.all_reduce(totals)
        point = {"epoch": epoch, "seconds": round(time.time() - t0, 3),
                 "val_accuracy": round(float(totals[2] / totals[3]), 6),
                 "train_loss": round(float(totals[0] / totals[1]), 6)}
        curve.append(point)
        say(f"epoch {epoch}: {point}")

    saved = None
    if rank == 0:
        os.makedirs(cfg["out"], exist_ok=True)
        model_path = os.path.join(cfg["out"], "model.pt")
        torch.save({"mean": mean.float(), "std": std.float()}, os.path.join(cfg["out"], "standardisation.pt"))
        torch.save(model.state_dict(), model_path)
        saved = {"model_saved_seconds": round(time.time() - t0, 3), "model_path": model_path}
    result = {"curve": curve, "startup": {k: round(v, 3) for k, v in marks.items()},
              "train_rows": n_train, "validation_rows": n_val, **(saved or {})}
    # Every torchrun process writes its return value to the same file: return rank 0's, identical on all ranks.
    box = [result]
    dist.broadcast_object_list(box, src=0)
    # Release DDP (its reducer holds the process group) before destroying the group.
    del ddp, optimizer
    dist.destroy_process_group()
    say(f"process group destroyed at {time.time() - t0:.2f}s")
    return box[0]


def versions():
    out = {}
    for name in ("torch", "pyspark", "numpy", "pandas", "pyarrow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="training Parquet (label INT 0/1, features ARRAY<DOUBLE>)")
    p.add_argument("--validation", required=True, help="validation Parquet, same columns")
    p.add_argument("--model", choices=["mlp64", "logistic"], required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--global-batch", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", required=True, help="folder for model.pt and standardisation.pt")
    p.add_argument("--spark-master", default="local[2]", help="Spark master for the session (default local[2])")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.workers < 1 or a.global_batch < a.workers or a.global_batch % a.workers:
        p.error("need epochs >= 1, workers >= 1 and a global batch that is a positive multiple of workers")
    return a


def main(argv=None):
    args = parse_args(argv)
    from pyspark.sql import SparkSession
    from pyspark.ml.torch.distributor import TorchDistributor

    spark = (SparkSession.builder.master(args.spark_master).appName("peer-torch-distributor")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    distributor = TorchDistributor(num_processes=args.workers, local_mode=True, use_gpu=False)

    cfg = {"train": os.path.abspath(args.train), "validation": os.path.abspath(args.validation),
           "model": args.model, "epochs": args.epochs, "global_batch": args.global_batch, "lr": args.lr,
           "seed": args.seed, "out": os.path.abspath(args.out)}
    meter = ProcessTreeMeter()
    meter.start()
    # The outcome is judged by the saved model: one left in --out by an earlier run must not pass for it.
    for stale in ("model.pt", "standardisation.pt"):
        if os.path.exists(os.path.join(cfg["out"], stale)):
            os.remove(os.path.join(cfg["out"], stale))
    t0 = time.time()
    cfg["t0"] = t0
    try:
        # The distributor copies torchrun's output to sys.stdout: keep stdout for the JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            result = distributor.run(train_fn, cfg)
    finally:
        wall = time.time() - t0
        usage = meter.stop()
    if not os.path.exists(os.path.join(cfg["out"], "model.pt")) or "model_path" not in result:
        # pyspark's torchrun wrapper exits 0 whatever torchrun's exit code: check the outcome, not the exit.
        raise RuntimeError(f"training finished without a saved model in {cfg['out']} (expected model.pt and rank 0's "
                           "result; torchrun's and the workers' output is above, on stderr)")
    log(f"run() returned after {wall:.2f}s; cpu {usage['cpu_seconds']:.2f}s "
        f"(sampled cross-check {usage['cpu_seconds_sampled']:.2f}s over {usage['processes_seen']} processes)")
    for mb, cmd in usage["peak_rss_by_process"]:
        log(f"  peak RSS {mb:8.1f} MB  {cmd}")
    spark.stop()

    curve = result["curve"]
    report = {
        "side": "torch_distributor", "model": args.model, "epochs": args.epochs,
        "global_batch": args.global_batch, "lr": args.lr, "seed": args.seed, "workers": args.workers,
        "wall_seconds": round(wall, 3), "cpu_seconds": round(usage["cpu_seconds"], 3),
        "peak_rss_mb": round(usage["peak_rss_mb"], 1),
        "final_val_accuracy": curve[-1]["val_accuracy"], "curve": curve,
        "versions": versions(), "doc": DOC_URL,
        "startup": result["startup"], "model_saved_seconds": result.get("model_saved_seconds"),
        "model_path": result.get("model_path"), "train_rows": result["train_rows"],
        "validation_rows": result["validation_rows"], "peak_pss_mb": round(usage["peak_pss_mb"], 1),
        "run_called_seconds": round(t0 - SCRIPT_STARTED, 3),
        "process_tree_totals": {"wall_seconds": round(time.time() - SCRIPT_STARTED, 3),
                                "cpu_seconds": round(usage["cpu_seconds_total"], 3)},
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
