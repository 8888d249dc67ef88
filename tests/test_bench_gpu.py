"""bench/bench_gpu.py (`make bench-gpu GPU=0`) where there is no GPU: it refuses with one line,
and with `--device cpu --quick` it runs through: the conformance of the engine on a device
against the CPU (here the CPU against itself, every blob compared) and every training
measurement (ResNet-20 staged and through the input pipeline, GoogLeNet in memory and from a
JPEG LMDB), at tiny sizes."""
import re

from tests.support.project import run_tool


def test_without_cuda_it_refuses_in_one_line():
    proc = run_tool("bench/bench_gpu.py", "--gpu", "0")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("bench_gpu: CUDA is not available to torch here")


def test_on_the_cpu_it_runs_every_part():
    proc = run_tool("bench/bench_gpu.py", "--device", "cpu", "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    conformance = re.findall(r"^   (\w+_(?:TRAIN|TEST)) +(\d+) blobs, .* ok$", proc.stdout, re.M)
    assert len(conformance) == 8 and all(int(n) > 20 for _, n in conformance)
    runs = re.findall(r"^   (ResNet-20|GoogLeNet), batch 2, (.+?) +(\d+) images/s", proc.stdout, re.M)
    assert [(net, how.split(",")[0]) for net, how, _ in runs] == [
        ("ResNet-20", "staged in device memory"), ("ResNet-20", "through the input pipeline"),
        ("GoogLeNet", "in memory (DummyData)"), ("GoogLeNet", "JPEG LMDB")]
    assert "minutes projected" in proc.stdout and "conformance passed" in proc.stdout
