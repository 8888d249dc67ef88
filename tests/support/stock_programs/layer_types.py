"""Stock pycaffe: the layer types Caffe registers (caffe.layer_type_list()), as JSON."""
import json

import caffe

print(json.dumps(sorted(caffe.layer_type_list())))
