"""Stock pycaffe: forwards each one-Data-layer net of a job list once and saves its tops.

    data_layer_forward.py JOBS.json     each job {"prototxt", "phase", "data", "label"
                                        [, "mean_file", "mean"]}: .npy outputs
"""
import json
import sys

import caffe
import numpy as np

for job in json.load(open(sys.argv[1])):
    phase = caffe.TRAIN if job["phase"] == "TRAIN" else caffe.TEST
    net = caffe.Net(job["prototxt"], phase)
    net.forward()
    np.save(job["data"], net.blobs["data"].data)
    np.save(job["label"], net.blobs["label"].data)
    if job.get("mean_file"):
        blob = caffe.proto.caffe_pb2.BlobProto()
        blob.ParseFromString(open(job["mean_file"], "rb").read())
        np.save(job["mean"], caffe.io.blobproto_to_array(blob))
    del net  # closes its database (LevelDB allows one opener per process)
