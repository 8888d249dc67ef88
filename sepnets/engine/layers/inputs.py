"""Layers that make the net's data: Input (set by the caller), DummyData (fillers), Data
(LevelDB/LMDB records) and ImageData (an image list decoded by OpenCV), both through the one
input pipeline (sepnets.engine.data: worker processes, Caffe's DataTransformer), and
MemoryData (arrays handed over from Python, as pycaffe's set_input_arrays does). HDF5Data is
in sepnets.engine.layers.hdf5."""
import numpy as np
import torch

from sepnets.caffe import db, glog
from sepnets.caffe.proto import caffe_pb2
from sepnets.caffe.shapes import INT_MAX
from sepnets.engine import data, fillers, records
from sepnets.engine.layers.base import Layer, LayerError, register
from sepnets.errors import UserError

TRANSFORM_FIELDS = {"scale", "mirror", "crop_size", "mean_file", "mean_value", "force_color",
                    "force_gray"}


@register
class Input(Layer):
    """Tops the caller fills (Net.set_input); zeros until then, as Caffe's fresh blobs."""
    TYPE = "Input"
    MAKES_DATA = True
    PARAMS = ("input_param",)
    FIELDS = {"input_param": {"shape"}}

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
    MAKES_DATA = True
    PARAMS = ("dummy_data_param",)
    FIELDS = {"dummy_data_param": {"data_filler", "shape", "num", "channels", "height", "width"}}

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


class Prefetching(Layer):
    """Data and ImageData: one input pipeline (sepnets.engine.data) over the layer's record
    source (sepnets.engine.records), batches made ahead of use."""
    MAKES_DATA = True

    def start(self, records, batch_size):
        """Batches of `records`, the transform's random choices drawn from the layer's seed
        (the solver's random_seed + rank)."""
        self.loader = data.batches(records, self.param, batch_size, self.train,
                                   self.rng(self.seed()), self.ctx.device)
        if tuple(self.loader.shape) != tuple(self.top_shapes[0]):
            self.fail(f"data shape {self.loader.shape} differs from the inferred "
                      f"{self.top_shapes[0]}")

    def seed(self):
        return self.ctx.seed if self.ctx.seed >= 0 else None

    @staticmethod
    def rng(seed):
        return np.random.default_rng(seed)

    def forward(self, bottoms):
        batch, labels = self.loader.next()
        return [batch, labels][:len(self.param.top)]

    def close(self):
        self.loader.close()


@register
class Data(Prefetching):
    TYPE = "Data"
    PARAMS = ("data_param", "transform_param")
    FIELDS = {"data_param": {"source", "batch_size", "backend", "prefetch", "rand_skip"},
              "transform_param": TRANSFORM_FIELDS}

    @classmethod
    def source_shapes(cls, param):
        return db.data_layer_shapes(param)

    def setup(self, shapes):
        p = self.param.data_param
        if p.rand_skip:
            glog.warning(None, f"layer '{self.name}': rand_skip is ignored (Caffe 1.0's Data "
                               "layer ignores it too)")
        backend = "lmdb" if p.backend == caffe_pb2.DataParameter.LMDB else "leveldb"
        glog.info(f"db_{backend}.cpp:{35 if backend == 'lmdb' else 18}",
                  f"Opened {backend} {p.source}")
        self.start(records.DatumSource.of_this_rank(self.param, self.train), p.batch_size)
        glog.info("data_layer.cpp:45", "output data size: " + ",".join(map(str, self.loader.shape)))


@register
class ImageData(Prefetching):
    """Caffe's ImageDataLayer: `path label` lines of image_data_param.source, each image read
    from root_folder + path by OpenCV (colour as BGR, or grayscale with is_color: false),
    resized to new_height x new_width when both are given (records.ImageListSource), then
    transform_param's transformation, through the Data layer's pipeline (worker processes,
    the GPU transform). shuffle and rand_skip draw from the engine's generator (seeded by the
    solver's random_seed + rank), not Caffe's, so their orders differ from stock Caffe's;
    every rank reads the whole list, as in Caffe (no Skip)."""
    TYPE = "ImageData"
    PARAMS = ("image_data_param", "transform_param")
    # scale, mean_file, crop_size and mirror of image_data_param are the deprecated fields
    # Caffe 1.0 no longer reads (transform_param has them): refused rather than dropped
    FIELDS = {"image_data_param": {"source", "batch_size", "rand_skip", "shuffle", "new_height",
                                   "new_width", "is_color", "root_folder"},
              "transform_param": TRANSFORM_FIELDS - {"force_color", "force_gray"}}

    @classmethod
    def source_shapes(cls, param):
        """image_data_layer.cpp:27-33 and 82-85: new_height and new_width both 0 or both
        positive (checked here, before the first image is read and resized), then the first
        image's shape; a resized image must be a blob Caffe can hold (at most INT_MAX
        values), not an allocation OpenCV attempts for minutes or the machine cannot make."""
        p = param.image_data_param
        where = f"layer '{param.name}' (ImageData)"
        if not (p.new_height == p.new_width == 0 or p.new_height > 0 and p.new_width > 0):
            raise LayerError(f"{where}: Current implementation requires new_height and new_width "
                             "to be set at the same time.")
        values = p.new_height * p.new_width * (3 if p.is_color else 1)
        if values > INT_MAX:
            raise LayerError(f"{where}: image_data_param.new_height x new_width {p.new_height} x "
                             f"{p.new_width}: an image of {values:,} values is more than a blob "
                             f"holds (INT_MAX, {INT_MAX:,})")
        first = records.read_image_list(p.source)[0][0]
        height, width, channels = records.read_image(p.root_folder + first, p.new_height,
                                                     p.new_width, p.is_color).shape
        crop = param.transform_param.crop_size
        if crop:
            height = width = crop
        return [(p.batch_size, channels, height, width), (p.batch_size,)]

    def setup(self, shapes):
        p = self.param.image_data_param
        seed = self.seed()
        # the list's order draws from its own stream (Caffe: prefetch_rng_, apart from the
        # transformer's)
        lines = records.ImageListSource(self.param, self.rng(None if seed is None else (seed, 1)),
                                        self.train)
        self.start(lines, p.batch_size)
        glog.info("image_data_layer.cpp:90", "output data size: "
                  + ",".join(map(str, self.loader.shape)))


@register
class MemoryData(Layer):
    """Caffe's MemoryDataLayer as pycaffe drives it: Net.set_input_arrays(data, labels) hands
    over float32 arrays of N x channels x height x width values and N labels (N a multiple of
    batch_size); each forward pass outputs the next batch_size of them, cycling. The arrays
    are not transformed (Caffe's Reset warns that transform_param is not applied to them)."""
    TYPE = "MemoryData"
    MAKES_DATA = True
    PARAMS = ("memory_data_param", "transform_param")
    FIELDS = {"memory_data_param": {"batch_size", "channels", "height", "width"},
              "transform_param": TRANSFORM_FIELDS}

    def setup(self, shapes):
        self.data = self.labels = None
        self.position = 0
        p = self.param.memory_data_param
        self.batch_size, self.item_shape = p.batch_size, (p.channels, p.height, p.width)

    def reset(self, data_array, labels):
        """pycaffe's checks (CheckContiguousArray, _Net_set_input_arrays), then Reset."""
        data_array, labels = np.asarray(data_array), np.asarray(labels)
        if labels.ndim == 1:
            labels = labels.reshape(-1, 1, 1, 1)
        for what, array, shape in (("data", data_array, self.item_shape),
                                   ("labels", labels, (1, 1, 1))):
            if array.dtype != np.float32:
                raise UserError(f"layer '{self.name}' (MemoryData): {what} array must be float32")
            if array.ndim != 4 or array.shape[1:] != shape:
                raise UserError(f"layer '{self.name}' (MemoryData): {what} array must be N x "
                                f"{' x '.join(map(str, shape))}, not {array.shape}")
        if data_array.shape[0] != labels.shape[0]:
            raise UserError(f"layer '{self.name}' (MemoryData): data and labels must have the "
                            "same first dimension")
        if data_array.shape[0] % self.batch_size:
            raise UserError(f"layer '{self.name}' (MemoryData): first dimensions of input arrays "
                            "must be a multiple of batch size")
        if self.param.HasField("transform_param"):
            glog.warning("memory_data_layer.cpp:90",
                         "MemoryData does not transform array data on Reset()")
        self.data = torch.from_numpy(np.array(data_array)).to(self.ctx.device)
        self.labels = torch.from_numpy(np.array(labels.reshape(-1))).to(self.ctx.device)
        self.position = 0

    def forward(self, bottoms):
        if self.data is None:
            self.fail("MemoryDataLayer needs to be initialized by calling Reset "
                      "(Net.set_input_arrays)")
        batch = slice(self.position, self.position + self.batch_size)
        self.position = (self.position + self.batch_size) % self.data.shape[0]
        return [self.data[batch], self.labels[batch]]
