#!/usr/bin/env python3
"""Converts a Stagecraft model bundle into one ONNX graph, for the peers of the inference benchmark.

Usage
-----
    python bundle_to_onnx.py BUNDLE_DIR OUT.onnx        # convert, then check the graph (below)
    python bundle_to_onnx.py --self-test                # convert and check made-up bundles of every shape

The last stdout line is one JSON object (everything else goes to stderr):

    {"onnx": OUT.onnx, "bundle": BUNDLE_DIR, "task", "activation", "widths": [123, ..., 1], "inputs": {...},
     "outputs": {...}, "opset", "standardised_inside",
     "check": {"rows", "max_abs_diff", "tolerance", "predictions_equal", "max_abs_diff_float64", "ok"}, "ok"}

and the exit code is 0 only if "ok" (on an invalid bundle: {"ok": false, "error": MESSAGE}, exit 1).

The bundle
----------
A bundle folder as Stagecraft's train step writes it (batch-inference: BundleManifest, ModelBundle, NetworkShape,
ParameterFile, BundleNetwork):

* `manifest.json`: `model` (`task` binary|multiclass|regression, `num_features`, `num_classes` for multiclass,
  `hidden` widths, `activation` relu|tanh|sigmoid, relu when absent), `standardization` (`mean`, `std` per feature:
  a feature is fed to the network as (x - mean) / std), `labels` (class index -> label value), and `files` (name ->
  bytes and SHA-256, checked here as the Java reader checks them).
* `weights.bin`: Stagecraft's parameter file, big-endian: int magic 0x53435057, int version 1, int count, count
  float32 values, long CRC-32 of the values' bytes. Layout: layer by layer, the weight row-major [outputs x inputs]
  then the bias.

The graph
---------
Built with `onnx.helper` only (no framework), opset 17, IR version 8 so that older ONNX Runtimes load it too.

* input `features` float32 [N, num_features]: the RAW features; N is dynamic.
* standardisation inside: (features - mean) / std, float32 constants.
* per hidden width: Gemm (x * W^T + b, the bundle's [outputs x inputs] weight used as stored, transB=1) and the
  bundle's activation; then the output layer's Gemm.
* outputs, as the infer step's output head names and fills them (OutputHead):
  - binary: `prediction` float32 [N] (labels[1] if p >= 0.5 else labels[0]: 1.0 / 0.0 for 0/1 labels) and
    `probability` float32 [N] (sigmoid of the output unit, p of class 1);
  - multiclass: `prediction` [N] (the label of the most probable class) and `probability` [N, K] (softmax);
  - regression: `prediction` [N].
  Being one float input [N, k] with float outputs [N] / [N, w], the graph is also a model the infer step itself
  can score (its ONNX path).

The check
---------
After writing, the graph is run with ONNX Runtime on 4,096 made-up rows (0/1 features like a9a's, rows spread like
the training data, a row of zeros) and compared with a NumPy forward pass re-implemented here from the same weights,
in the bundle's own arithmetic: standardisation in float64 cast to float32 (as the infer step's SQL does it), then
float32 layers (as BundleNetwork's tensors). The largest |difference| of any output must be <= 1e-6 (for regression
relative to max(1, |value|)), and the predicted classes equal wherever the decision is not within 1e-6 of a tie; the
script exits 1 otherwise. The difference from a float64 forward pass is reported too (max_abs_diff_float64).
`--no-check` skips the check (onnxruntime is then not needed).
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import tempfile
import zlib

import numpy as np

MAGIC = 0x53435057
VERSION = 1
OPSET = 17
IR_VERSION = 8
TOLERANCE = 1e-6
ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
TASKS = ("binary", "multiclass", "regression")


def log(msg):
    print(f"bundle_to_onnx: {msg}", file=sys.stderr, flush=True)


class BundleError(Exception):
    pass


# --- reading a bundle -------------------------------------------------------------------------------------------


def read_parameters(data, where):
    """The float32 vector of a Stagecraft parameter file's bytes, after checking magic, version, count and CRC-32."""
    if len(data) < 12 + 8:
        raise BundleError(f"Invalid parameter file {where}: {len(data)} bytes (too short for a header and a CRC)")
    magic, version, count = struct.unpack(">iii", data[:12])
    if magic != MAGIC:
        raise BundleError(f"Invalid parameter file {where}: magic 0x{magic & 0xFFFFFFFF:08x} (expected 0x{MAGIC:08x})")
    if version != VERSION:
        raise BundleError(f"Unsupported parameter file {where}: version {version} (supported: {VERSION})")
    if count < 0 or len(data) != 12 + 4 * count + 8:
        raise BundleError(f"Invalid parameter file {where}: count {count} but {len(data)} bytes "
                          f"(expected {12 + 4 * max(count, 0) + 8})")
    values = data[12:12 + 4 * count]
    (crc,) = struct.unpack(">q", data[12 + 4 * count:])
    if zlib.crc32(values) != crc:
        raise BundleError(f"Invalid parameter file {where}: CRC-32 0x{zlib.crc32(values):08x} of {count} values "
                          f"(expected 0x{crc & 0xFFFFFFFF:08x})")
    return np.frombuffer(values, dtype=">f4").astype(np.float32)


def write_parameters(values):
    """The bytes of a Stagecraft parameter file holding `values` (for --self-test)."""
    body = np.asarray(values, dtype=">f4").tobytes()
    return struct.pack(">iii", MAGIC, VERSION, len(values)) + body + struct.pack(">q", zlib.crc32(body))


def read_bundle(folder):
    """(manifest, shape, standardisation, layers) of the bundle in `folder`; files checked against the manifest."""
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path, "rb") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise BundleError(f"Invalid model bundle {folder}: no manifest.json (expected a bundle written by a train "
                          f"step)") from None
    except ValueError as e:
        raise BundleError(f"Invalid model bundle {folder}: cannot parse manifest.json: {e}") from None
    files = manifest.get("files") or {}
    if "weights.bin" not in files:
        raise BundleError(f"Invalid model bundle {folder}: no weights.bin in its manifest (has: "
                          f"{', '.join(files) or 'nothing'})")
    entry = files["weights.bin"]
    try:
        with open(os.path.join(folder, "weights.bin"), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BundleError(f"Invalid model bundle {folder}: no weights.bin (expected next to manifest.json, which "
                          f"lists it)") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != entry.get("bytes") or digest != entry.get("sha256"):
        raise BundleError(f"Invalid model bundle {folder}: weights.bin has {len(data)} bytes, SHA-256 {digest} "
                          f"(manifest: {entry.get('bytes')} bytes, {entry.get('sha256')})")
    params = read_parameters(data, os.path.join(folder, "weights.bin"))

    model = manifest.get("model") or {}
    task = str(model.get("task") or "").lower()
    if task not in TASKS:
        raise BundleError(f"Invalid model bundle {folder}: model task '{task}' (expected one of: {', '.join(TASKS)})")
    activation = str(model.get("activation") or "relu").lower()
    if activation not in ACTIVATIONS:
        raise BundleError(f"Invalid model bundle {folder}: activation '{activation}' (expected one of: "
                          f"{', '.join(ACTIVATIONS)})")
    num_features = int(model.get("num_features") or 0)
    num_outputs = int(model.get("num_classes") or 0) if task == "multiclass" else 1
    hidden = [int(h) for h in (model.get("hidden") or [])]
    widths = [num_features] + hidden + [num_outputs]
    if min(widths) < 1:
        raise BundleError(f"Invalid model bundle {folder}: widths {widths} (expected positive sizes)")

    layers, offset = [], 0
    for n_in, n_out in zip(widths, widths[1:]):
        w = params[offset:offset + n_in * n_out].reshape(n_out, n_in)
        offset += n_in * n_out
        b = params[offset:offset + n_out]
        offset += n_out
        layers.append((w, b))
    if offset != params.size:
        raise BundleError(f"Invalid model bundle {folder}: {params.size} parameters (expected {offset} for widths "
                          f"{widths})")

    st = manifest.get("standardization")
    if st is not None:
        mean, std = np.asarray(st["mean"], np.float64), np.asarray(st["std"], np.float64)
        if mean.shape != (num_features,) or std.shape != (num_features,):
            raise BundleError(f"Invalid model bundle {folder}: standardisation of {mean.size} means and {std.size} "
                              f"standard deviations (expected {num_features} of each)")
        st = (mean, std)
    labels = [float(v) for v in (manifest.get("labels") or [])]
    if task == "binary" and len(labels) != 2:
        labels = [0.0, 1.0]  # as the infer step does
    shape = {"task": task, "activation": activation, "widths": widths, "labels": labels}
    return manifest, shape, st, layers


# --- the graph --------------------------------------------------------------------------------------------------


def build_graph(manifest, shape, st, layers):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    x = "features"
    if st is not None:
        nodes.append(helper.make_node("Sub", [x, const("mean", st[0].astype(np.float32))], ["centred"]))
        nodes.append(helper.make_node("Div", ["centred", const("std", st[1].astype(np.float32))], ["standardised"]))
        x = "standardised"
    act = ACTIVATIONS[shape["activation"]]
    for i, (w, b) in enumerate(layers):
        out = f"layer{i}"
        nodes.append(helper.make_node("Gemm", [x, const(f"w{i}", w), const(f"b{i}", b)], [out], transB=1))
        x = out
        if i < len(layers) - 1:
            nodes.append(helper.make_node(act, [x], [f"{out}_{shape['activation']}"]))
            x = f"{out}_{shape['activation']}"

    n = "N"
    task, labels = shape["task"], shape["labels"]
    if task == "binary":
        nodes.append(helper.make_node("Reshape", [x, const("flat", np.array([-1], np.int64))], ["logit"]))
        nodes.append(helper.make_node("Sigmoid", ["logit"], ["probability"]))
        nodes.append(helper.make_node("GreaterOrEqual", ["probability", const("half", np.float32(0.5))], ["is1"]))
        nodes.append(helper.make_node("Where", ["is1", const("label1", np.float32(labels[1])),
                                                const("label0", np.float32(labels[0]))], ["prediction"]))
        outputs = [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [n]),
                   helper.make_tensor_value_info("probability", TensorProto.FLOAT, [n])]
    elif task == "multiclass":
        k = shape["widths"][-1]
        nodes.append(helper.make_node("Softmax", [x], ["probability"], axis=1))
        nodes.append(helper.make_node("ArgMax", ["probability"], ["best"], axis=1, keepdims=0))
        # Class index -> label value; an index past the labels list is its own value, as in the infer step.
        values = [labels[c] if c < len(labels) else float(c) for c in range(k)]
        nodes.append(helper.make_node("Gather", [const("labels", np.array(values, np.float32)), "best"],
                                      ["prediction"], axis=0))
        outputs = [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [n]),
                   helper.make_tensor_value_info("probability", TensorProto.FLOAT, [n, k])]
    else:
        nodes.append(helper.make_node("Reshape", [x, const("flat", np.array([-1], np.int64))], ["prediction"]))
        outputs = [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [n])]

    inputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, [n, shape["widths"][0]])]
    name = f"{manifest.get('name', 'bundle')}-{manifest.get('version', '')}".strip("-")
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits,
                              doc_string="Stagecraft model bundle: raw features in, standardised inside")
    model = helper.make_model(graph, producer_name="stagecraft bundle_to_onnx",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    for k, v in (("stagecraft.bundle.name", manifest.get("name")), ("stagecraft.bundle.version",
                 manifest.get("version")), ("stagecraft.bundle.weights_sha256",
                 (manifest.get("files") or {}).get("weights.bin", {}).get("sha256"))):
        if v is not None:
            model.metadata_props.add(key=k, value=str(v))
    onnx.checker.check_model(model, full_check=True)
    return model


def write_atomically(path, data):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- the check --------------------------------------------------------------------------------------------------


def reference(raw, shape, st, layers, dtype=np.float32):
    """Outputs by name for raw float features, computed with NumPy from the bundle's weights.

    float32 (the default) mirrors the bundle's own scoring (BundleNetwork: float32 tensors, the features standardised
    in double by the infer step's SQL, then cast to float); float64 gives the exact answer for the same weights.
    """
    x = np.asarray(raw, np.float64)
    if st is not None:
        x = (x - st[0]) / st[1]
    x = x.astype(np.float32).astype(dtype)
    act = {"relu": lambda v: np.maximum(v, dtype(0)), "tanh": np.tanh,
           "sigmoid": lambda v: dtype(1) / (dtype(1) + np.exp(-v))}[shape["activation"]]
    for i, (w, b) in enumerate(layers):
        x = x @ w.astype(dtype).T + b.astype(dtype)
        if i < len(layers) - 1:
            x = act(x)
    task, labels = shape["task"], shape["labels"]
    if task == "binary":
        p = dtype(1) / (dtype(1) + np.exp(-x[:, 0]))
        return {"probability": p, "prediction": np.where(p >= 0.5, labels[1], labels[0])}
    if task == "multiclass":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        values = np.array([labels[c] if c < len(labels) else float(c) for c in range(p.shape[1])])
        return {"probability": p, "prediction": values[p.argmax(axis=1)]}
    return {"prediction": x[:, 0]}


def largest_diff(got, want, task):
    """The largest |difference| over the outputs (relative for regression; classes compared by classes_equal)."""
    worst = 0.0
    for name in want:
        if name == "prediction" and task != "regression":
            continue
        diff = np.abs(np.asarray(got[name], np.float64) - want[name])
        if task == "regression":  # an unbounded value: its float32 rounding grows with it
            diff = diff / np.maximum(1.0, np.abs(want[name]))
        worst = max(worst, float(np.max(diff, initial=0.0)))
    return worst


def classes_equal(got, want, task):
    """Whether the predicted classes agree on every row whose decision is not within the tolerance of a tie."""
    if task == "regression":
        return True
    p = np.asarray(want["probability"], np.float64)
    if task == "binary":
        clear = np.abs(p - 0.5) > TOLERANCE
    else:
        top2 = np.sort(p, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > TOLERANCE
    return bool(np.array_equal(got["prediction"][clear], want["prediction"][clear]))


def check(model_bytes, shape, st, layers, rows=4096, seed=7):
    import onnxruntime as ort

    nf = shape["widths"][0]
    rng = np.random.default_rng(seed)
    half = rows // 2
    # a9a-like rows (0/1 features, ~11% ones), then rows spread like the training data (mean + std * N(0, 1)), then
    # a row of zeros.
    mean, std = st if st is not None else (np.zeros(nf), np.ones(nf))
    raw = np.concatenate([(rng.random((half, nf)) < 0.11),
                          mean + std * rng.normal(0.0, 1.0, (rows - half - 1, nf)),
                          np.zeros((1, nf))]).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"features": raw})))
    want = reference(raw, shape, st, layers)
    exact = reference(raw, shape, st, layers, dtype=np.float64)
    if sorted(got) != sorted(want):
        raise BundleError(f"ONNX outputs {sorted(got)} (expected {sorted(want)})")
    for name in want:
        if np.shape(got[name]) != np.shape(want[name]):
            raise BundleError(f"ONNX output '{name}' has shape {np.shape(got[name])} (expected {np.shape(want[name])})")
    task = shape["task"]
    worst = largest_diff(got, want, task)
    same = classes_equal(got, want, task)
    return {"rows": rows, "max_abs_diff": worst, "tolerance": TOLERANCE, "predictions_equal": same,
            "max_abs_diff_float64": largest_diff(got, exact, task), "ok": bool(worst <= TOLERANCE and same)}


# --- main -------------------------------------------------------------------------------------------------------


def convert(bundle, out, run_check=True):
    manifest, shape, st, layers = read_bundle(bundle)
    model = build_graph(manifest, shape, st, layers)
    data = model.SerializeToString()
    write_atomically(out, data)
    log(f"wrote {out} ({len(data)} bytes): {shape['task']}, widths {shape['widths']}, {shape['activation']}")
    result = {"onnx": os.path.abspath(out), "bundle": os.path.abspath(bundle), "task": shape["task"],
              "activation": shape["activation"], "widths": shape["widths"],
              "inputs": {"features": ["N", shape["widths"][0]]},
              "outputs": {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
                          for o in model.graph.output},
              "opset": OPSET, "standardised_inside": st is not None}
    if run_check:
        c = check(data, shape, st, layers)
        log(f"check against NumPy: {c['rows']} rows, max |diff| {c['max_abs_diff']:.3g}, classes "
            f"{'equal' if c['predictions_equal'] else 'DIFFERENT'}")
        result["check"] = c
    return result


def make_bundle(folder, task, hidden, activation, nf=123, classes=3, seed=0):
    """A made-up bundle in Stagecraft's format (for --self-test)."""
    rng = np.random.default_rng(seed)
    widths = [nf] + hidden + [classes if task == "multiclass" else 1]
    params = []
    for n_in, n_out in zip(widths, widths[1:]):
        params.append(rng.normal(0, 1 / np.sqrt(n_in), n_out * n_in))
        params.append(rng.normal(0, 0.1, n_out))
    weights = write_parameters(np.concatenate(params).astype(np.float32))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "weights.bin"), "wb") as f:
        f.write(weights)
    manifest = {
        "format_version": 1, "name": f"selftest_{task}", "version": "1",
        "model": {"type": "mlp" if hidden else "logistic", "task": task, "num_features": nf,
                  "num_classes": classes if task == "multiclass" else 2, "hidden": hidden, "activation": activation},
        "standardization": {"mean": rng.random(nf).tolist(), "std": (0.05 + rng.random(nf)).tolist()},
        "labels": [float(c) for c in range(classes)] if task == "multiclass" else ([0.0, 1.0] if task == "binary"
                                                                                  else []),
        "files": {"weights.bin": {"bytes": len(weights), "sha256": hashlib.sha256(weights).hexdigest()}},
    }
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)


def self_test():
    cases = [("binary", [], "relu"), ("binary", [256, 256], "relu"), ("binary", [64], "tanh"),
             ("binary", [32, 16], "sigmoid"), ("multiclass", [64], "relu"), ("regression", [32], "tanh")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bundle-to-onnx-") as tmp:
        for i, (task, hidden, act) in enumerate(cases):
            folder = os.path.join(tmp, f"b{i}")
            make_bundle(folder, task, hidden, act, seed=i)
            r = convert(folder, os.path.join(tmp, f"b{i}.onnx"))
            results.append({"task": task, "hidden": hidden, "activation": act, **r["check"]})
        # A corrupted weights file is refused (the manifest's checksum), as the Java reader refuses it.
        folder = os.path.join(tmp, "b0")
        with open(os.path.join(folder, "weights.bin"), "r+b") as f:
            f.seek(20)
            f.write(b"\x01")
        try:
            read_bundle(folder)
            refused = False
        except BundleError as e:
            log(f"corrupted bundle refused: {e}")
            refused = True
    return {"self_test": results, "corrupted_refused": refused,
            "ok": refused and all(r["ok"] for r in results)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle", nargs="?", help="the model bundle folder (with manifest.json and weights.bin)")
    p.add_argument("out", nargs="?", help="the .onnx file to write")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with the NumPy forward pass")
    p.add_argument("--self-test", action="store_true", help="convert and check made-up bundles of every shape")
    a = p.parse_args(argv)
    try:
        if a.self_test:
            result = self_test()
        elif a.bundle and a.out:
            result = convert(a.bundle, a.out, run_check=not a.no_check)
            result["ok"] = result.get("check", {}).get("ok", True)
        else:
            p.error("expected BUNDLE_DIR OUT.onnx, or --self-test")
    except BundleError as e:
        log(str(e))
        print(json.dumps({"ok": False, "error": str(e)}))
        return 1
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
