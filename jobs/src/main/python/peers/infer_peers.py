#!/usr/bin/env python3
"""Peer sides of the inference benchmark: what a Spark user would pick instead of Stagecraft's `infer` step.

Both sides read the same Parquet, score it with the same ONNX graph (bundle_to_onnx.py: the bundle's network with
its standardisation inside) in ONNX Runtime, and write Parquet with `row_id`, `label`, `probability` and
`prediction` (both DOUBLE), on the same cores.

Usage
-----
    python infer_peers.py --side predict_batch_udf|ray_data --input PARQUET --onnx MODEL.onnx --output DIR \
        [--batch 4096] [--cores 2] [--runs 3] [--warmup-input PARQUET] [--timeout 1800] \
        [--ray-actor-cpus 0.5] [--ray-io-cpus 1]

Input: Parquet (a file or a folder of part files) with `row_id` BIGINT, `label` INT and `features` ARRAY<DOUBLE>,
as many values per row as the graph's input `features` [N, k] takes (123 for a9a).

The last stdout line is one JSON object (everything else, the JVM's and Ray's output included, goes to stderr):

    {"side", "rows", "rows_per_second" (best run), "best_seconds", "median_seconds", "cpu_seconds", "peak_rss_mb",
     "versions": {"pyspark", "pyarrow", "pandas", "onnxruntime", "ray", "numpy"}, "output": DIR, "doc": URL,
     "runs": [{"seconds", "cpu_seconds", "peak_rss_mb", "peak_pss_mb", ...} per timed run], "warmup_seconds",
     "batch", "cores", "output_rows", "peak_pss_mb", "cpu_method"}

`cpu_seconds` and `peak_rss_mb` are the best run's (the run that `best_seconds` and `rows_per_second` come from);
`runs` has every timed run's. The keys after "doc" are extras. DIR holds the last run's output when the script ends.

The sides
---------
Every ONNX Runtime session: CPU provider, 1 intra-op thread, 1 inter-op thread, sequential execution, created once
per worker process and kept for all its batches (the sides run one worker per core).

* predict_batch_udf: `pyspark.ml.functions.predict_batch_udf` used as its API page describes
  (https://spark.apache.org/docs/3.5.5/api/python/reference/api/pyspark.ml.functions.predict_batch_udf.html):
  `make_predict_fn` loads the model (here: opens the ONNX Runtime session) and returns the predict function;
  `input_tensor_shapes=[[k]]` turns the flat ARRAY<DOUBLE> column into a [batch, k] ndarray; the return type is a
  struct whose fields the predict function fills from a dict of arrays; `batch_size` = --batch. pyspark caches the
  predict function in each Python worker, and Python workers are reused (`spark.python.worker.reuse`, the default),
  so each worker opens its session once. SparkSession `local[CORES]`, Arrow enabled
  (`spark.sql.execution.arrow.pyspark.enabled`), Arrow batches of --batch rows
  (`spark.sql.execution.arrow.maxRecordsPerBatch`, so that the UDF's batches are whole ones), driver memory 4g
  (as bin/stagecraft's -Xmx4g), UI off, the Python workers running this script's interpreter (PYSPARK_PYTHON).
  Read, select `row_id`, `label` and the UDF's struct's two fields, write; the plan, logged once, shows one
  ArrowEvalPython node: the UDF runs once per row although two fields are taken from its result.
* ray_data: Ray Data as its batch inference guide describes (https://docs.ray.io/en/latest/data/batch_inference.html):
  `ray.init(num_cpus=CORES)`, `ray.data.read_parquet` -> `map_batches` with a callable class that opens the session
  in `__init__` and scores a batch in `__call__`, on a fixed pool of CORES actors (`compute=ActorPoolStrategy(size=
  CORES)`: what `concurrency=CORES` asks, without the argument Ray 2.60 deprecates), `batch_size` = --batch,
  `batch_format="numpy"` (batches as dicts of NumPy arrays: the guide's and map_batches' default, and what the model
  takes; pandas would only add a conversion) -> `write_parquet`. Progress bars off.
  Logical CPUs: each actor asks 0.5 CPU (--ray-actor-cpus), read and write tasks Ray's default 1 (--ray-io-cpus).
  With 1 CPU per actor the 2 actors hold both logical CPUs, start first, and the read tasks never get one: the run
  hangs (a known Ray Data limitation, ray-project/ray issue 44687, still open; so does 0.75 per actor with 0.25 per
  read/write task, and 1 per actor with 0 per read/write task). This only changes Ray's bookkeeping: every process
  still runs on the same 2 real cores, each actor's ONNX Runtime session on 1 thread.

Timing
------
The session (SparkSession, or the Ray runtime) is started first, outside the timings. Then one untimed warm-up run
(on --warmup-input, by default the input itself), then --runs timed runs, each from reading the input to the output
written (the output folder is emptied before each run, outside its timing). best_seconds and median_seconds are over
the timed runs; rows_per_second = rows / best_seconds. After the runs the output's rows are counted and must equal
the input's. A run that takes longer than --timeout seconds stops the side (exit code 1), rather than hanging.

CPU seconds and peak RSS: of this process and ALL its descendants over the run's window — the Spark JVM that
pyspark launches and its Python workers, or Ray's processes (GCS server, raylet, workers, actors) — measured by
ProcessTreeMeter (process_tree.py, which says how): the larger of the rusage and the sampled CPU, less the sampler's
own. For Ray the sampled figure is the larger by far: Ray Data's actors exit at the end of every run and their CPU
never shows in the rusage total. peak_pss_mb (proportional set size) is reported beside the peak RSS.

Start-up inside each timed run, as each peer's documentation has it: Ray Data starts a new actor pool for every
execution of a dataset, so each of Ray's timed runs includes its actors' start and their ONNX Runtime sessions;
Spark reuses its Python workers, and predict_batch_udf caches the session its make_predict_fn returns, so Spark's
sessions are made during the warm-up run.

Environment: bin/peer-env's venv (pyspark 3.5.5, onnxruntime, ray[data], psutil); Java 17 for the Spark JVM
(`java` on PATH or JAVA_HOME).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import time
from importlib import metadata

from process_tree import ProcessTreeMeter

PREDICT_BATCH_UDF_DOC = ("https://spark.apache.org/docs/3.5.5/api/python/reference/api/"
                         "pyspark.ml.functions.predict_batch_udf.html")
RAY_DATA_DOC = "https://docs.ray.io/en/latest/data/batch_inference.html"
SIDES = ("predict_batch_udf", "ray_data")


def log(msg):
    print(f"infer_peers: {msg}", file=sys.stderr, flush=True)


def ort_session(path):
    """An ONNX Runtime session on the CPU: 1 intra-op and 1 inter-op thread, sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def model_signature(path):
    """(input name, number of features) of the graph; it must give `probability` and `prediction` [N]."""
    s = ort_session(path)
    inputs = s.get_inputs()
    outputs = {o.name: o.shape for o in s.get_outputs()}
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or not isinstance(inputs[0].shape[1], int):
        raise SystemExit(f"infer_peers: {path}: expected one float input [N, k] (has {[i.shape for i in inputs]})")
    for name in ("probability", "prediction"):
        if name not in outputs or len(outputs[name]) != 1:
            raise SystemExit(f"infer_peers: {path}: expected outputs probability [N] and prediction [N] (has "
                             f"{outputs}); convert a binary bundle with bundle_to_onnx.py")
    return inputs[0].name, inputs[0].shape[1]


# --- the sides --------------------------------------------------------------------------------------------------


def make_predict_fn_for(onnx_path, input_name):
    """The `make_predict_fn` of predict_batch_udf: runs once per Python worker, opens the session there."""

    def make_predict_fn():
        import numpy as np

        session = ort_session(onnx_path)

        def predict(features):
            # features: [batch, k] float64, from input_tensor_shapes; the graph takes float32.
            prediction, probability = session.run(["prediction", "probability"],
                                                  {input_name: features.astype(np.float32)})
            return {"probability": probability.astype(np.float64), "prediction": prediction.astype(np.float64)}

        return predict

    return make_predict_fn


class PredictBatchUdfSide:
    doc = PREDICT_BATCH_UDF_DOC

    def __init__(self, args, onnx_path, input_name, num_features):
        from pyspark.ml.functions import predict_batch_udf
        from pyspark.sql import SparkSession
        from pyspark.sql.types import DoubleType, StructField, StructType

        self.spark = (SparkSession.builder
                      .master(f"local[{args.cores}]")
                      .appName("stagecraft-peer-predict_batch_udf")
                      .config("spark.driver.memory", "4g")
                      .config("spark.ui.enabled", "false")
                      .config("spark.ui.showConsoleProgress", "false")
                      .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                      .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch))
                      .config("spark.python.worker.reuse", "true")
                      .getOrCreate())
        self.spark.sparkContext.setLogLevel("WARN")
        self.udf = predict_batch_udf(
            make_predict_fn_for(onnx_path, input_name),
            return_type=StructType([StructField("probability", DoubleType(), True),
                                    StructField("prediction", DoubleType(), True)]),
            batch_size=args.batch,
            input_tensor_shapes=[[num_features]])
        self.explained = False

    def run(self, input_path, output):
        from pyspark.sql import functions as F

        scored = (self.spark.read.parquet(input_path)
                  .select("row_id", "label", self.udf("features").alias("scores"))
                  .select("row_id", "label", F.col("scores.probability").alias("probability"),
                          F.col("scores.prediction").alias("prediction")))
        if not self.explained:  # once, to stderr: one ArrowEvalPython node, the UDF evaluated once per row
            log("plan:\n" + scored._jdf.queryExecution().executedPlan().toString())
            self.explained = True
        scored.write.mode("overwrite").parquet(output)

    def close(self):
        self.spark.stop()


class OnnxBatchScorer:
    """The callable class of Ray Data's map_batches: one ONNX Runtime session per actor."""

    def __init__(self, onnx_path, input_name):
        self.session = ort_session(onnx_path)
        self.input_name = input_name

    def __call__(self, batch):
        import numpy as np

        x = batch["features"]
        if x.dtype == object:  # a list column can come as an array of arrays
            x = np.stack(x)
        prediction, probability = self.session.run(["prediction", "probability"],
                                                   {self.input_name: x.astype(np.float32)})
        return {"row_id": batch["row_id"], "label": batch["label"],
                "probability": probability.astype(np.float64), "prediction": prediction.astype(np.float64)}


class RayDataSide:
    doc = RAY_DATA_DOC

    def __init__(self, args, onnx_path, input_name, num_features):  # the sides take the same arguments
        import ray

        self.ray = ray
        self.args = args
        self.onnx_path = onnx_path
        self.input_name = input_name
        ray.init(num_cpus=args.cores, include_dashboard=False)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False

    def run(self, input_path, output):
        ray = self.ray
        io = self.args.ray_io_cpus
        ds = ray.data.read_parquet(input_path, num_cpus=io).select_columns(["row_id", "label", "features"])
        ds = ds.map_batches(OnnxBatchScorer,
                            fn_constructor_args=(self.onnx_path, self.input_name),
                            compute=ray.data.ActorPoolStrategy(size=self.args.cores),
                            batch_size=self.args.batch,
                            batch_format="numpy",
                            num_cpus=self.args.ray_actor_cpus,
                            udf_modifying_row_count=False)
        ds.write_parquet(output, ray_remote_args={"num_cpus": io})

    def close(self):
        self.ray.shutdown()


# --- main -------------------------------------------------------------------------------------------------------


def count_rows(path):
    import pyarrow.dataset as pads

    return pads.dataset(path, format="parquet", ignore_prefixes=[".", "_"]).count_rows()


def versions():
    out = {}
    for name in ("pyspark", "pyarrow", "pandas", "onnxruntime", "ray", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


class RunTimeout(Exception):
    pass


def with_timeout(seconds, what, fn):
    """Runs fn(), raising RunTimeout in this (the main) thread if it takes longer than `seconds`."""

    def expired(signum, frame):
        raise RunTimeout(f"{what} took longer than {seconds:g} s (--timeout)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def clear(folder):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    elif os.path.exists(folder):
        os.unlink(folder)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", choices=SIDES, required=True)
    p.add_argument("--input", required=True, help="Parquet: row_id BIGINT, label INT, features ARRAY<DOUBLE>")
    p.add_argument("--onnx", required=True, help="the ONNX graph (bundle_to_onnx.py)")
    p.add_argument("--output", required=True, help="the output folder (replaced)")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup-input", help="Parquet for the untimed warm-up run (default: --input)")
    p.add_argument("--ray-actor-cpus", type=float, default=0.5, help="ray_data: logical CPUs of each actor")
    p.add_argument("--ray-io-cpus", type=float, default=1.0, help="ray_data: logical CPUs of each read/write task")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a run may take before the side is stopped")
    a = p.parse_args(argv)
    if a.batch < 1 or a.cores < 1 or a.runs < 1:
        p.error("need --batch, --cores and --runs >= 1")
    return a


def main(argv=None):
    args = parse_args(argv)
    # Only the JSON line goes to stdout: fd 1 becomes stderr for everything else, the JVM's and Ray's processes
    # (which inherit it) included.
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)

    onnx_path = os.path.abspath(args.onnx)
    input_path = os.path.abspath(args.input)
    output = os.path.abspath(args.output)
    if args.side == "predict_batch_udf":
        # Spark's Python workers run this interpreter (the venv's), not whatever `python3` is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        java = shutil.which("java")
        if "JAVA_HOME" not in os.environ and java:
            os.environ["JAVA_HOME"] = os.path.dirname(os.path.dirname(os.path.realpath(java)))
    input_name, num_features = model_signature(onnx_path)
    rows = count_rows(input_path)
    log(f"{args.side}: {rows} rows x {num_features} features from {input_path}, model {onnx_path}, batch "
        f"{args.batch}, {args.cores} cores, {args.runs} timed runs")

    t0 = time.perf_counter()
    side = (PredictBatchUdfSide if args.side == "predict_batch_udf" else RayDataSide)(args, onnx_path, input_name,
                                                                                       num_features)
    log(f"{args.side}: session started in {time.perf_counter() - t0:.1f} s")
    meter = ProcessTreeMeter()
    try:
        clear(output)
        t0 = time.perf_counter()
        warmup_input = os.path.abspath(args.warmup_input) if args.warmup_input else input_path
        with_timeout(args.timeout, "the warm-up run", lambda: side.run(warmup_input, output))
        warmup = time.perf_counter() - t0
        log(f"{args.side}: warm-up run {warmup:.2f} s")
        runs = []
        for i in range(args.runs):
            clear(output)
            meter.start()
            t0 = time.perf_counter()
            try:
                with_timeout(args.timeout, f"timed run {i + 1}", lambda: side.run(input_path, output))
            finally:
                seconds = time.perf_counter() - t0
                m = meter.stop()
            runs.append({"seconds": seconds, **{k: v for k, v in m.items() if k != "peak_rss_by_process"}})
            log(f"{args.side}: run {i + 1}: {seconds:.2f} s, {rows / seconds:,.0f} rows/s, CPU {m['cpu_seconds']:.1f} "
                f"s (rusage {m['cpu_seconds_rusage']:.1f}, sampled {m['cpu_seconds_sampled']:.1f}, sampler "
                f"{m['sampler_cpu_seconds']:.2f}), peak RSS {m['peak_rss_mb']:.0f} MB (PSS {m['peak_pss_mb']:.0f} "
                f"MB), {m['processes_seen']} processes")
    finally:
        side.close()

    out_rows = count_rows(output)
    if out_rows != rows:
        raise SystemExit(f"infer_peers: {args.side} wrote {out_rows} rows to {output} (expected {rows})")
    best = min(runs, key=lambda r: r["seconds"])
    result = {
        "side": args.side, "rows": rows, "rows_per_second": round(rows / best["seconds"], 1),
        "best_seconds": round(best["seconds"], 3),
        "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "cpu_seconds": round(best["cpu_seconds"], 2), "peak_rss_mb": round(best["peak_rss_mb"], 1),
        "versions": versions(), "output": output, "doc": side.doc,
        "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
        "warmup_seconds": round(warmup, 3), "batch": args.batch, "cores": args.cores, "output_rows": out_rows,
        "peak_pss_mb": round(best["peak_pss_mb"], 1),
        "cpu_method": "max(rusage of the live tree, last-seen samples of every process seen) minus the sampler's",
    }
    os.write(result_fd, (json.dumps(result) + "\n").encode())
    os.close(result_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
