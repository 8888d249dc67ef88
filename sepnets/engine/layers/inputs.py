"""Layers that make the net's data: Input (set by the caller), DummyData (fillers) and Data
(LevelDB/LMDB records through Caffe's DataTransformer)."""
import numpy as np
import torch

from sepnets.caffe import glog
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import data, fillers
from sepnets.engine.layers.base import Layer, register
from sepnets.errors import UserError


@register
class Input(Layer):
    """Tops the caller fills (Net.set_input); zeros until then, as Caffe's fresh blobs."""
    TYPE = "Input"
    PARAMS = ("input_param",)
    FIELDS = {"input_param": {"shape"}}
    NUM_BOTTOMS = 0

    def setup(self, shapes):
        self.values = [self.zeros(shape) for shape in self.top_shapes]

    def set(self, index, array):
        value = torch.as_tensor(np.asarray(array, dtype=np.float32))
        if tuple(value.shape) != tuple(self.top_shapes[index]):
            raise UserError(f"input '{self.param.top[index]}': shape {tuple(value.shape)} given, "
                            f"the net takes {tuple(self.top_shapes[index])}")
        self.values[index] = value.to(self.ctx.device)

    def forward(self, bottoms):
        return list(self.values)


@register
class DummyData(Layer):
    """Tops filled by data_filler (one for all tops, or one per top); constant fillers fill
    once, the others refill every forward pass, as in Caffe."""
    TYPE = "DummyData"
    PARAMS = ("dummy_data_param",)
    FIELDS = {"dummy_data_param": {"data_filler", "shape", "num", "channels", "height", "width"}}
    NUM_BOTTOMS = 0

    def setup(self, shapes):
        p = self.param.dummy_data_param
        given = list(p.data_filler)
        if len(given) not in (0, 1, len(self.top_shapes)):
            self.fail(f"give 0, 1 or {len(self.top_shapes)} data_filler, not {len(given)}")
        default = fillers.constant(0.0)
        self.fillers = [given[min(i, len(given) - 1)] if given else default
                        for i in range(len(self.top_shapes))]
        self.values = [self._fill(i) for i in range(len(self.top_shapes))]

    def _fill(self, index):
        return self.make_blob(self.fillers[index], self.top_shapes[index], "data_filler")

    def forward(self, bottoms):
        for i, filler in enumerate(self.fillers):
            if filler.type != "constant":
                self.values[i] = self._fill(i)
        return list(self.values)


@register
class Data(Layer):
    TYPE = "Data"
    PARAMS = ("data_param", "transform_param")
    FIELDS = {"data_param": {"source", "batch_size", "backend", "prefetch", "rand_skip"},
              "transform_param": {"scale", "mirror", "crop_size", "mean_file", "mean_value",
                                  "force_color", "force_gray"}}
    NUM_BOTTOMS = 0
    NUM_TOPS = (1, 2)

    def setup(self, shapes):
        p = self.param.data_param
        if p.rand_skip:
            glog.warning(None, f"layer '{self.name}': rand_skip is ignored (Caffe 1.0's Data "
                               "layer ignores it too)")
        backend = "lmdb" if p.backend == caffe_pb2.DataParameter.LMDB else "leveldb"
        glog.info(f"db_{backend}.cpp:{35 if backend == 'lmdb' else 18}",
                  f"Opened {backend} {p.source}")
        seed = self.ctx.seed if self.ctx.seed >= 0 else None
        self.loader = data.BatchLoader(self.param, self.train, np.random.default_rng(seed))
        if tuple(self.loader.shape) != tuple(self.top_shapes[0]):
            self.fail(f"data shape {self.loader.shape} differs from the inferred "
                      f"{self.top_shapes[0]}")
        glog.info("data_layer.cpp:45", "output data size: " + ",".join(map(str, self.loader.shape)))

    def forward(self, bottoms):
        batch, labels = self.loader.next()
        device = self.ctx.device
        tops = [torch.from_numpy(batch).to(device, non_blocking=True)]
        if len(self.param.top) > 1:
            tops.append(torch.from_numpy(labels).to(device, non_blocking=True))
        return tops

    def close(self):
        self.loader.close()
