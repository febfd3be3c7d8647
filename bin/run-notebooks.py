"""Executes notebooks headlessly on the JJava kernel (`java`) and checks them; run by `bin/notebook run` and NotebooksIT.

    python bin/run-notebooks.py [--out DIR] [--cell-timeout S] NOTEBOOK...

A notebook fails when a cell raises (its asserting cells throw on a wrong number), when a cell tagged `image` shows no
image/png, or one tagged `html` no text/html, or when the notebook file in the repository carries outputs (they are
kept cleared in git). Each notebook runs with its own folder as the working directory, as Jupyter does. Prints one line
per notebook and exits 1 if any failed. Executed copies (with outputs) go to --out.
"""
import argparse
import json
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

EXPECTED = {"image": "image/png", "html": "text/html"}


def stored_outputs(nb):
    """Cells of the stored notebook that carry outputs or execution counts (should be cleared in git)."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def check_expected(nb):
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for tag in cell.get("metadata", {}).get("tags", []):
            mime = EXPECTED.get(tag)
            if mime and not any(mime in o.get("data", {}) for o in cell.get("outputs", [])):
                problems.append(f"cell {i} (tagged '{tag}') shows no {mime} output")
    return problems


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def describe(nb, e):
    """One line for a failed cell: its index and what it raised (the kernel's traceback follows, indented)."""
    index = next((i for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.get("output_type") == "error"),
                 None)
    trace = next((o.get("traceback", []) for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "error"), [])
    head = f"cell {index} raised {e.ename}: {e.evalue}"
    rest = "\n".join("    " + ANSI.sub("", t) for t in trace[1:12])
    return head + ("\n" + rest if rest else "")


def run(path, out_dir, cell_timeout):
    name = os.path.basename(path)
    nb = nbformat.read(path, as_version=4)
    dirty = stored_outputs(nb)
    if dirty:
        return False, f"{name}: FAILED: cells {dirty} carry outputs in the repository (clear them before committing)"
    start = time.monotonic()
    client = NotebookClient(nb, kernel_name="java", timeout=cell_timeout, startup_timeout=180,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    error = None
    try:
        client.execute()
    except CellExecutionError as e:
        error = describe(nb, e)
    except CellTimeoutError as e:
        error = "a cell timed out: " + str(e).strip().splitlines()[0]
    seconds = time.monotonic() - start
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        nbformat.write(nb, os.path.join(out_dir, name))
    if error:
        return False, f"{name}: FAILED after {seconds:.1f}s: {error}"
    problems = check_expected(nb)
    if problems:
        return False, f"{name}: FAILED after {seconds:.1f}s: " + "; ".join(problems)
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    code = sum(1 for c in nb.cells if c.cell_type == "code")
    return True, f"{name}: ok in {seconds:.1f}s ({code} code cells, {images} image(s)) " + json.dumps(
        {"notebook": name, "seconds": round(seconds, 1)})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--out", help="folder for the executed copies")
    p.add_argument("--cell-timeout", type=int, default=600, help="seconds one cell may take (default 600)")
    args = p.parse_args()
    passed = failed = 0
    for path in args.notebooks:
        ok, line = run(path, args.out, args.cell_timeout)
        print(line, flush=True)
        passed, failed = passed + ok, failed + (not ok)
    print(f"notebooks: {passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
