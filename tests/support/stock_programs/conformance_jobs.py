"""Runs conformance jobs in stock pycaffe (Python 3.9, numpy 1.19): `conformance_jobs.py
jobs.json` (tests.support.pycaffe runs it). Many jobs share one process (pycaffe starts in
~1 s).

Each job: {"model", "phase", "weights", "inputs": {blob: .npy}, "top_diffs": {blob: .npy},
"memory_data": {"data": .npy, "labels": .npy} (for a first MemoryData layer, or empty),
"forwards": n, "backward": bool, "out": .npz}. Writes, per forward pass k, every blob's data
("k|blob|NAME"); after the last pass every parameter blob ("param|LAYER|i"); after backward
the input blobs' diffs ("diff|NAME") and the parameter diffs ("pdiff|LAYER|i").
"""
import json
import sys

import caffe
import numpy as np


def run(job):
    phase = getattr(caffe, job["phase"])
    net = caffe.Net(job["model"], phase, weights=job["weights"]) if job.get("weights") \
        else caffe.Net(job["model"], phase)
    for name, path in job.get("inputs", {}).items():
        net.blobs[name].data[...] = np.load(path)
    memory = job.get("memory_data")
    if memory:
        net.set_input_arrays(np.load(memory["data"]), np.load(memory["labels"]))
    out = {}
    for k in range(job.get("forwards", 1)):
        net.forward()
        for name, blob in net.blobs.items():
            out["%d|blob|%s" % (k, name)] = blob.data.copy()
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            out["param|%s|%d" % (layer, i)] = blob.data.copy()
    if job.get("backward"):
        for name, path in job.get("top_diffs", {}).items():
            net.blobs[name].diff[...] = np.load(path)
        net.backward()
        for name in job.get("inputs", {}):
            out["diff|%s" % name] = net.blobs[name].diff.copy()
        for layer, blobs in net.params.items():
            for i, blob in enumerate(blobs):
                out["pdiff|%s|%d" % (layer, i)] = blob.diff.copy()
    np.savez(job["out"], **out)


def main(run_job=run):
    """Runs every job of the JSON file named on the command line (with `run_job`)."""
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        run_job(job)
    print(json.dumps({"done": len(jobs)}))


if __name__ == "__main__":
    main()
