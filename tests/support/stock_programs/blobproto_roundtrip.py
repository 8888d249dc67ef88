"""Stock pycaffe: reads a .binaryproto with caffe.io, writes twice its values to another.

    blobproto_roundtrip.py IN OUT     prints {"shape", "values"} of IN as JSON
"""
import json
import sys

import caffe
from caffe.proto import caffe_pb2

b = caffe_pb2.BlobProto()
b.ParseFromString(open(sys.argv[1], 'rb').read())
a = caffe.io.blobproto_to_array(b)
open(sys.argv[2], 'wb').write(caffe.io.array_to_blobproto(a * 2).SerializeToString())
print(json.dumps({"shape": list(a.shape), "values": a.ravel().tolist()}))
