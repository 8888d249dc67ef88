"""results.md: the authors' comparison table (Full, BiPattern, Refined) for one workspace,
with the network's parameter counts and R/B/BQ sizes, from what the pipeline measured
(logs/<name>/eval.json, the sweep's CSV) — no number is typed in."""
import csv
import json
import math
import time

from sepnets import names
from sepnets.caffe import files
from sepnets.nets import analysis

LABELS = {"full": "Full", "patterned": "BiPattern", "refined": "Refined"}


def sizes_table(ws, pattern_layers):
    info = analysis.analyze(ws.deploy)
    is_pattern = lambda layer: layer.name in pattern_layers  # noqa: E731
    binarized = sum(math.prod(layer.param_shapes[0]) for layer in info.layers
                    if layer.name in pattern_layers and layer.param_shapes)
    total = info.total()
    sizes = info.sizes(True, is_pattern)
    return [
        "| parameters | binarized (pattern) | real-valued | R (float32) | B (1-bit patterns) "
        "| BQ (B + 8-bit rest) |",
        "|--:|--:|--:|--:|--:|--:|",
        f"| {total:,} | {binarized:,} | {total - binarized:,} | {sizes['R'] / analysis.MB:.3f} MB "
        f"| {sizes['B'] / analysis.MB:.3f} MB | {sizes['BQ'] / analysis.MB:.3f} MB |",
    ]


def read_sweep(path):
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return list(csv.reader(f))


def markdown_table(rows):
    head, body = rows[0], rows[1:]
    return ["| " + " | ".join(head) + " |", "|" + "|".join("--:" for _ in head) + "|"] + \
           ["| " + " | ".join(r) + " |" for r in body]


def onnx_lines(ws, models):
    """The ONNX export recorded in logs/<name>/onnx.json (sepnets.deploy.evaluate), if any:
    its size and ONNX Runtime's accuracy next to Caffe's for the same model."""
    path = ws.log(names.ONNX_JSON)
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    caffe = models.get(doc["label"], {}).get("outputs", {}).get("accuracy")
    mb = analysis.MB
    p = doc["predicted"]
    return ["", "## Deployment: ONNX", "",
            f"The {LABELS[doc['label']]} model exported by sepnets.deploy (opset {doc['opset']}; "
                f"{', '.join(doc['pattern_layers']) or 'no layer'} as INT2 signs + a scale per "
                "filter, the rest float32):", "",
            "| file | size | netinfo R / B / BQ | accuracy, ONNX Runtime | accuracy, Caffe |",
            "|---|--:|--:|--:|--:|",
            f"| `{doc['model']}` | {doc['bytes'] / mb:.3f} MB | {p['R'] / mb:.3f} / {p['B'] / mb:.3f} / "
            f"{p['BQ'] / mb:.3f} MB | {doc['accuracy']:.4f} ({doc['images']:,} test images) | "
            + (f"{caffe:.4f} |" if caffe is not None else "- |")]


def write(ws, selector, title, notes=()):
    """Writes logs/<name>/results.md; returns its path."""
    doc = json.loads(ws.eval_path().read_text())
    models = doc["models"]
    outputs = []
    for entry in models.values():
        outputs += [k for k in entry["outputs"] if k not in outputs]
    columns = [k for k in ("full", "patterned", "refined") if k in models]
    layers = list(files.read_net(ws.train_val).layer)
    binarized = [layer.name for layer in selector.select(layers)]
    held = selector.held_first(layers)

    lines = [f"# {title}", "",
             f"Measured by the pipeline on {time.strftime('%Y-%m-%d %H:%M')} with the "
             f"{'stock Caffe 1.0' if doc['engine'] == 'caffe' else 'PyTorch'} engine; every "
             f"number below comes from `caffe test` over {doc['iterations']} test batches "
             f"(logs/{ws.name}/eval.json).", "",
             "## Test accuracy: full, pattern-binarized, refined", ""]
    rows = [["output"] + [LABELS[c] for c in columns]]
    for out in outputs:
        rows.append([out] + [f"{models[c]['outputs'][out]:.4f}" if out in models[c]["outputs"]
                             else "-" for c in columns])
    lines += markdown_table(rows)
    lines += ["", "| model | file |", "|---|---|"]
    lines += [f"| {LABELS[c]} | `{models[c]['model']}` |" for c in columns]
    lines += onnx_lines(ws, models)
    lines += ["", "## Pattern binarization", "",
              f"Selection `{selector.describe()}`: binarized {', '.join(binarized) or 'nothing'}"
              + (f"; {', '.join(held)} stays real-valued (first convolution on the input)."
                 if held else "."), ""]
    lines += sizes_table(ws, set(binarized))
    sweep = read_sweep(ws.log(names.SWEEP_CSV))
    if sweep:
        chosen = [r[0] for r in sweep[1:] if r[-1] == "1"]
        lines += ["", f"Offset sweep (each offset's patterned model on the test set; kept: "
                      f"a = {chosen[0] if chosen else '?'}):", ""]
        lines += markdown_table([sweep[0][:-1]] + [r[:-1] for r in sweep[1:]])
    if notes:
        lines += ["", "## How it was run", ""] + [f"- {n}" for n in notes]
    path = ws.log(names.RESULTS_MD)
    files.atomic_write(path, ("\n".join(lines) + "\n").encode())
    return path
