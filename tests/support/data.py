"""What stock Caffe's Data layer produces from a database: one pycaffe run per call, any
number of Data layers (each in its own one-layer net), every top saved as .npy."""
import json

import numpy as np

from sepnets.caffe import files
from sepnets.caffe.proto import caffe_pb2
from tests.support import pycaffe


def data_layer(source, backend, batch_size, mean_file=None, crop=0, mirror=False):
    layer = caffe_pb2.LayerParameter(name="data", type="Data", top=["data", "label"])
    layer.data_param.source = str(source)
    layer.data_param.backend = getattr(caffe_pb2.DataParameter, backend.upper())
    layer.data_param.batch_size = batch_size
    if mean_file:
        layer.transform_param.mean_file = str(mean_file)
    if crop:
        layer.transform_param.crop_size = crop
    layer.transform_param.mirror = mirror
    return layer


def forward(stock, tmp_path, layers, phase="TEST"):
    """[(layer, phase?)] or [layer] -> [{"data": array, "label": array, "mean": array?}], as
    stock Caffe's Data layer (with its DataTransformer) outputs them."""
    jobs = []
    for i, item in enumerate(layers):
        layer, job_phase = item if isinstance(item, tuple) else (item, phase)
        net = caffe_pb2.NetParameter(name=f"read{i}")
        copy = net.layer.add()
        copy.CopyFrom(layer)
        del copy.include[:]
        prototxt = tmp_path / f"read{i}.prototxt"
        files.write_text(prototxt, net)
        job = {"prototxt": str(prototxt), "phase": job_phase, "data": str(tmp_path / f"d{i}.npy"),
               "label": str(tmp_path / f"l{i}.npy")}
        if layer.transform_param.mean_file:
            job.update(mean_file=layer.transform_param.mean_file, mean=str(tmp_path / f"m{i}.npy"))
        jobs.append(job)
    spec = tmp_path / "read_jobs.json"
    spec.write_text(json.dumps(jobs))
    pycaffe.run("data_layer_forward", spec)
    return [{key: np.load(job[key]) for key in ("data", "label", "mean") if key in job} for job in jobs]
