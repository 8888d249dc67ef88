"""Stock pycaffe: every message of its caffe_pb2 with its fields (name, number, type, label,
default) as JSON."""
import json

from caffe.proto import caffe_pb2

out = {}
for name, m in caffe_pb2.DESCRIPTOR.message_types_by_name.items():
    out[name] = sorted([f.name, f.number, f.type, f.label, str(f.default_value)] for f in m.fields)
print(json.dumps(out))
