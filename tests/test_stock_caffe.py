"""Stock Caffe as installed by `make setup`: the caffe tool and pycaffe run from the rootfs."""
import subprocess

from tests.support import pycaffe
from tests.support.project import NETS, REPO


def test_caffe_time_runs_a_small_net(stock):
    proc = stock.run_caffe(["time", "-model", NETS / "tiny_train.prototxt", "-iterations", "3"])
    log = proc.stderr
    assert "Average Forward pass:" in log and "Average Backward pass:" in log
    assert "Average Forward-Backward:" in log
    assert "conv1\tforward:" in log  # per-layer timing lines


def test_caffe_wrapper_reports_version_and_honours_CAFFE(stock, tmp_path):
    out = subprocess.run([REPO / "tools" / "caffe", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "caffe version 1.0.0" in out.stdout + out.stderr
    fake = tmp_path / "mycaffe"
    fake.write_text("#!/bin/sh\necho my-own-build \"$@\"\n")
    fake.chmod(0o755)
    out = subprocess.run([REPO / "tools" / "caffe", "train", "-gpu", "0"], capture_output=True,
                         text=True, env={"CAFFE": str(fake), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "my-own-build train -gpu 0"


def test_pycaffe_is_stock_caffe_1_0(stock):
    version = pycaffe.run("version").strip()
    assert version == "1.0.0"


def test_without_a_rootfs_the_wrappers_say_what_to_do(tmp_path):
    env = {"SEPNETS_CAFFE_ROOT": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for tool in ("caffe", "pycaffe"):
        out = subprocess.run([REPO / "tools" / tool, "--version"], capture_output=True, text=True, env=env)
        assert out.returncode == 2
        assert "run 'make setup'" in out.stderr and "CAFFE=" in out.stderr
