"""Runs deploy-net forward passes in stock pycaffe (Python 3.9, numpy 1.19) for the ONNX export
tests: `deploy_forward.py jobs.json` (tests.support.deploy runs it), many jobs in one process.

Each job: {"model", "weights" (a caffemodel, or null: the net's fillers), "save" (optional:
write the weights to this caffemodel first, with BatchNorm statistics, Scale parameters and
biases set to random non-trivial values, since fillers leave them constant), "seed", "inputs":
{blob: .npy} (input blobs are reshaped to these arrays), "out": .npz}. Writes every blob's
data after one TEST forward pass.
"""
import caffe
import conformance_jobs
import numpy as np

BIASED = ("Convolution", "InnerProduct")


def non_trivial(net, rng):
    """Random statistics for BatchNorm (positive variances, a factor in [0.5, 2]), Scale and
    bias blobs: with the fillers' constants these layers would compute next to nothing."""
    for layer in net.layers:
        blobs = layer.blobs
        if layer.type == "BatchNorm":
            factor = rng.uniform(0.5, 2.0)
            blobs[0].data[...] = 0.1 * rng.randn(*blobs[0].data.shape) * factor
            blobs[1].data[...] = rng.uniform(0.5, 1.5, blobs[1].data.shape) * factor
            blobs[2].data[...] = factor
        elif layer.type == "Scale":
            blobs[0].data[...] = rng.uniform(0.5, 1.5, blobs[0].data.shape)
            if len(blobs) > 1:
                blobs[1].data[...] = 0.1 * rng.randn(*blobs[1].data.shape)
        elif layer.type in BIASED and len(blobs) > 1:
            blobs[1].data[...] = 0.1 * rng.randn(*blobs[1].data.shape)


def run(job):
    if job.get("weights"):
        net = caffe.Net(job["model"], caffe.TEST, weights=job["weights"])
    else:
        net = caffe.Net(job["model"], caffe.TEST)
    if job.get("save"):
        non_trivial(net, np.random.RandomState(job.get("seed", 0)))
        net.save(job["save"])
    inputs = {name: np.load(path) for name, path in job["inputs"].items()}
    for name, array in inputs.items():
        net.blobs[name].reshape(*array.shape)
    net.reshape()
    for name, array in inputs.items():
        net.blobs[name].data[...] = array
    net.forward()
    np.savez(job["out"], **{name: blob.data for name, blob in net.blobs.items()})


if __name__ == "__main__":
    conformance_jobs.main(run)
