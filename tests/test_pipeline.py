"""The pipeline (tools/pipeline.py, the Makefile's procedure targets) with stock Caffe on the
real MNIST sample: train -> sweep -> fine-tune -> evaluate -> results, and resuming."""
import json
import os
import shlex
import subprocess

import numpy as np
import pytest

from sepnets.caffe import files
from sepnets.cli import pipeline
from tests.support.project import REPO, run_tool, trained_lenet, workdir

PIPELINE = REPO / "tools" / "pipeline.py"


@pytest.fixture(scope="module")
def demo_run(stock, tmp_path_factory):
    root = workdir(tmp_path_factory.mktemp("demo"), "lenet")
    proc = run_tool(PIPELINE, "demo", "--train-iters", "80", "--finetune-iters", "40",
                    "--sweep", "0.03:0.05:0.01", cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, proc.stdout


def test_demo_measures_full_patterned_refined(demo_run):
    root, out = demo_run
    for i in range(1, 8):
        assert f"[demo {i}/7," in out  # progress through every stage
    doc = json.loads((root / "logs/demo/eval.json").read_text())
    acc = {k: v["outputs"]["accuracy"] for k, v in doc["models"].items()}
    assert set(acc) == {"full", "patterned", "refined"}
    assert acc["full"] > 0.5  # 80 iterations of LeNet learn MNIST well beyond chance (0.1)
    assert all(0 <= a <= 1 for a in acc.values())
    # results.md shows exactly the measured numbers in the authors' column order
    results = (root / "logs/demo/results.md").read_text()
    row = next(line for line in results.splitlines() if line.startswith("| accuracy |"))
    assert [c.strip() for c in row.strip("|").split("|")][1:] == \
        [f"{acc[k]:.4f}" for k in ("full", "patterned", "refined")]
    assert "| output | Full | BiPattern | Refined |" in results
    assert "binarized conv2; conv1 stays real-valued" in results
    assert "| 431,080 | 25,000 | 406,080 |" in results  # LeNet; conv2's 5x5 weights patterned


def test_demo_exports_the_refined_model_to_onnx(demo_run):
    """models/demo/lenet_refined.onnx: conv2 found as patterns; ONNX Runtime's accuracy on the
    1,000 test images equals Caffe's for the same weights (a near-tie may flip one image)."""
    root, out = demo_run
    doc = json.loads((root / "logs/demo/onnx.json").read_text())
    path = root / "models/demo/lenet_refined.onnx"
    assert doc["model"] == "models/demo/lenet_refined.onnx" and doc["bytes"] == path.stat().st_size
    assert doc["pattern_layers"] == ["conv2"] and doc["images"] == 1000
    caffe = json.loads((root / "logs/demo/eval.json").read_text())["models"]["refined"]["outputs"]["accuracy"]
    assert abs(doc["accuracy"] - caffe) <= 1 / 1000
    results = (root / "logs/demo/results.md").read_text()
    assert (f"| `models/demo/lenet_refined.onnx` | {doc['bytes'] / 1e6:.3f} MB | "
            f"{doc['predicted']['R'] / 1e6:.3f} / ") in results
    assert f"| {doc['accuracy']:.4f} (1,000 test images) | {caffe:.4f} |" in results
    assert f"ONNX Runtime accuracy on the test set: {doc['accuracy']:.4f}" in out


def test_demo_keeps_patterns_fixed_and_uses_the_swept_offset(demo_run):
    root, _ = demo_run
    sweep = [r.split(",") for r in (root / "logs/demo/sweep.csv").read_text().splitlines()]
    assert [r[0] for r in sweep[1:]] == ["0.03", "0.04", "0.05"]
    best = next(r[0] for r in sweep[1:] if r[-1] == "1")
    doc = json.loads((root / "logs/demo/eval.json").read_text())
    patterned = files.read_model(root / doc["models"]["patterned"]["model"])
    refined = files.read_model(root / doc["models"]["refined"]["model"])
    full = files.read_model(root / doc["models"]["full"]["model"])
    assert doc["models"]["patterned"]["model"].endswith(f"_quant_5x5_{best}.caffemodel")
    conv2 = patterned.blobs["conv2"][0]
    assert set(np.unique(np.abs(conv2))) == {np.float32(best)}
    assert np.array_equal(refined.blobs["conv2"][0], conv2)  # frozen during fine-tuning
    assert np.array_equal(patterned.blobs["conv1"][0], full.blobs["conv1"][0])  # first conv real
    assert not np.array_equal(refined.blobs["conv1"][0], full.blobs["conv1"][0])  # fine-tuned
    assert not np.array_equal(refined.blobs["ip1"][0], full.blobs["ip1"][0])


def test_demo_rerun_reuses_finished_steps(demo_run):
    root, _ = demo_run
    proc = run_tool(PIPELINE, "demo", "--train-iters", "80", "--finetune-iters", "40",
                    "--sweep", "0.03:0.05:0.01", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "already trained to iteration 80" in proc.stdout
    assert "already trained to iteration 40" in proc.stdout
    other = run_tool(PIPELINE, "demo", "--train-iters", "90", cwd=root)
    assert other.returncode == 2 and "holds a demo run with another schedule" in other.stderr


def test_train_resumes_from_the_newest_solverstate(stock, tmp_path):
    root, _, _ = trained_lenet(tmp_path)
    models = root / "models/lenet"
    assert {p.name for p in models.iterdir() if not p.name.startswith(".")} == {
        f"lenet_iter_{i}.{kind}" for i in (10, 20) for kind in ("caffemodel", "solverstate")}
    for kind in ("caffemodel", "solverstate"):
        (models / f"lenet_iter_20.{kind}").unlink()
    again = run_tool(PIPELINE, "train", "lenet", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "--snapshot models/lenet/lenet_iter_10.solverstate" in again.stdout
    log = (root / "logs/lenet/train.log").read_text()
    assert "Resuming from models/lenet/lenet_iter_10.solverstate" in log
    assert (models / "lenet_iter_20.caffemodel").exists()
    done = run_tool(PIPELINE, "train", "lenet", cwd=root)
    assert "already trained to iteration 20" in done.stdout


def test_missing_data_names_the_make_target(tmp_path):
    root = workdir(tmp_path, "resnet20")
    proc = run_tool(PIPELINE, "train", "resnet20", cwd=root)
    assert proc.returncode == 2
    assert ("data/cifar10/highway-padded/train_leveldb, which does not exist: run "
            "`make data-cifar10` first") in proc.stderr
    assert run_tool(PIPELINE, "quant", "resnet20", "--filter", "3x3", "--offset", "0.06",
                    cwd=root).stderr.strip().endswith("run `make train-resnet20` first")


def make_dry(*args):
    # a clean environment: under `make test` the outer make's MAKEFLAGS/MAKELEVEL would reach it
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=REPO,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1].rstrip()


def make_step(monkeypatch, *args):
    """What a make target runs: the pipeline's `make` arguments as the shell hands them over
    (make -n, split as the shell would), turned into the step's argv by the pipeline."""
    monkeypatch.chdir(REPO)
    words = shlex.split(make_dry(*args))
    at = words.index("make")
    return pipeline.make_argv(words[at + 1], words[at + 2:])


def test_makefile_passes_the_variables(monkeypatch):
    assert make_step(monkeypatch, "train-sepnet-small", "ENGINE=torch", "GPU=0") == \
        ["train", "sepnet-small", "--engine", "torch", "--gpu", "0"]
    assert make_step(monkeypatch, "quant", "NET=resnet20", "FILTER=3x3 5x5", "OFFSET=0.06") == \
        ["quant", "resnet20", "--filter", "3x3", "5x5", "--offset", "0.06", "--engine", "caffe"]
    assert make_step(monkeypatch, "quant") == \
        ["quant", "lenet", "--filter", "kxk", "--sweep", "0.02:0.09:0.01", "--engine", "caffe"]
    assert make_step(monkeypatch, "finetune", "NET=googlenet", "FILTER=3x3") == \
        ["finetune", "googlenet", "--filter", "3x3", "--engine", "caffe"]
    assert make_step(monkeypatch, "eval", "GPU=all", "ENGINE=torch") == \
        ["eval", "lenet", "--filter", "kxk", "--engine", "torch", "--gpu", "all"]
    assert make_step(monkeypatch, "results", "NET=resnet20", "FILTER=3x3") == \
        ["results", "resnet20", "--filter", "3x3"]
    assert make_step(monkeypatch, "plot", "NET=resnet20") == ["plot", "resnet20"]
    assert make_step(monkeypatch, "demo") == ["demo", "--engine", "caffe"]
    assert make_step(monkeypatch, "export", "NET=lenet", "FILTER=5x5", "BQ=1") == \
        ["--workspace", "lenet", "--filter", "5x5", "--bq"]     # tools/export_onnx.py's argv
    assert make_step(monkeypatch, "export") == ["--workspace", "lenet", "--filter", "kxk"]


def test_demo_runs_on_the_torch_engine_too(tmp_path):
    """ENGINE=torch: the same files and steps through `python -m sepnets.caffe`; its logs feed
    plot_log.py and its snapshots quant_pattern.py and fix_pattern.py like stock Caffe's."""
    root = workdir(tmp_path, "lenet")
    proc = run_tool(PIPELINE, "demo", "--engine", "torch", "--train-iters", "60",
                    "--finetune-iters", "20", "--sweep", "0.04,0.06", cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "-m sepnets.caffe train --solver models/demo/solver.prototxt" in proc.stdout
    assert "-m sepnets.caffe train --solver models/demo/solver_fix_5x5_pattern.prototxt " \
           "--weights models/demo/lenet_iter_60_quant_5x5_" in proc.stdout
    doc = json.loads((root / "logs/demo/eval.json").read_text())
    assert doc["engine"] == "torch" and doc["models"]["full"]["outputs"]["accuracy"] > 0.5
    patterned = files.read_model(root / doc["models"]["patterned"]["model"])
    refined = files.read_model(root / doc["models"]["refined"]["model"])
    assert np.array_equal(refined.blobs["conv2"][0], patterned.blobs["conv2"][0])
    assert "test accuracy: final" in (root / "logs/demo/plot.log").read_text()
    assert "PyTorch engine" in (root / "logs/demo/results.md").read_text()
