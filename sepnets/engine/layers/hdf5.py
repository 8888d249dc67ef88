"""HDF5 layers (h5py): HDF5Data reads the datasets named after its tops from the files its
source lists, HDF5Output writes its two bottoms to datasets "data" and "label"."""
import io
from pathlib import Path

import h5py
import numpy as np
import torch

from sepnets.caffe import files, glog
from sepnets.caffe.shapes import legacy_axes
from sepnets.engine.layers.base import Layer, register
from sepnets.errors import CaffeFileError


def read_file_list(source):
    """HDF5Data's source: HDF5 file names separated by white space (`source_file >> line`)."""
    try:
        names = Path(source).read_text().split()
    except OSError as err:
        raise CaffeFileError(source, f"Failed to open source file: {err.strerror}") from None
    if not names:
        raise CaffeFileError(source, "Must have at least 1 HDF5 filename listed")
    return names


def load_datasets(path, names):
    """The datasets `names` of an HDF5 file as float32 arrays of at least one axis, with the
    same first dimension (Caffe's LoadHDF5FileData)."""
    try:
        with h5py.File(path, "r") as f:
            arrays = []
            for name in names:
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    raise CaffeFileError(path, f"Failed to get dataset info for {name} (the "
                                               "HDF5Data layer's tops name its datasets)")
                arrays.append(np.asarray(f[name][...], dtype=np.float32))
    except OSError as err:
        raise CaffeFileError(path, f"Failed opening HDF5 file: {err}") from None
    for name, array in zip(names, arrays):
        if array.ndim < 1 or array.shape[0] != arrays[0].shape[0]:
            raise CaffeFileError(path, f"dataset {name} {array.shape} must have the "
                                       f"{arrays[0].shape[0]} rows of dataset {names[0]}")
    return arrays


@register
class HDF5Data(Layer):
    """Rows batch_size at a time from the listed files in turn, starting over after the last;
    with shuffle, the files and each file's rows in a random order (the engine's generator,
    not Caffe's, so the orders differ from stock Caffe's)."""
    TYPE = "HDF5Data"
    MAKES_DATA = True
    PARAMS = ("hdf5_data_param", "transform_param")
    FIELDS = {"hdf5_data_param": {"source", "batch_size", "shuffle"}}

    @classmethod
    def source_shapes(cls, param):
        p = param.hdf5_data_param
        arrays = load_datasets(read_file_list(p.source)[0], list(param.top))
        return [(p.batch_size,) + array.shape[1:] for array in arrays]

    def setup(self, shapes):
        if self.param.HasField("transform_param"):
            self.fail("HDF5Data does not transform data.")
        p = self.param.hdf5_data_param
        if p.batch_size <= 0:
            self.fail("hdf5_data_param.batch_size must be positive")
        glog.info("hdf5_data_layer.cpp:81", f"Loading list of HDF5 filenames from: {p.source}")
        self.files = read_file_list(p.source)
        glog.info("hdf5_data_layer.cpp:95", f"Number of HDF5 files: {len(self.files)}")
        self.shuffle = p.shuffle
        self.rng = np.random.default_rng(self.ctx.seed if self.ctx.seed >= 0 else None)
        self.file_order = np.arange(len(self.files))
        if self.shuffle:
            self.rng.shuffle(self.file_order)
        self.current_file = 0
        self._load()

    def _load(self):
        self.arrays = load_datasets(self.files[self.file_order[self.current_file]],
                                    list(self.param.top))
        self.row_order = np.arange(self.arrays[0].shape[0])
        if self.shuffle:
            self.rng.shuffle(self.row_order)
        self.current_row = 0

    def _next(self):
        """Caffe's Next: the following row, the following file after a file's last row."""
        self.current_row += 1
        if self.current_row < self.arrays[0].shape[0]:
            return
        if len(self.files) > 1:
            self.current_file += 1
            if self.current_file == len(self.files):
                self.current_file = 0
                if self.shuffle:
                    self.rng.shuffle(self.file_order)
            self._load()
        else:
            self.current_row = 0
            if self.shuffle:
                self.rng.shuffle(self.row_order)

    def forward(self, bottoms):
        batch = [np.empty(shape, np.float32) for shape in self.top_shapes]
        for i in range(self.param.hdf5_data_param.batch_size):
            row = self.row_order[self.current_row]
            for out, array in zip(batch, self.arrays):
                out[i] = array[row]
            self._next()
        return [torch.from_numpy(b).to(self.ctx.device) for b in batch]


@register
class HDF5Output(Layer):
    """Writes its bottoms (data, label) to hdf5_output_param.file_name as the float datasets
    "data" and "label" in Caffe's 4-axis (num, channels, height, width) shape, on the forward
    pass (atomically: the file appears complete). Stock Caffe can write its datasets only
    once and stops on a second forward pass; so does the engine."""
    TYPE = "HDF5Output"
    PARAMS = ("hdf5_output_param",)
    FIELDS = {"hdf5_output_param": {"file_name"}}

    def setup(self, shapes):
        self.file_name = self.param.hdf5_output_param.file_name
        if not self.file_name:
            self.fail("hdf5_output_param.file_name must name the file to write")
        self.written = False

    def forward(self, bottoms):
        if self.written:
            self.fail(f"{self.file_name}: its datasets are written already (stock Caffe stops "
                      "here too: HDF5Output saves one forward pass per net)")
        arrays = [b.detach().cpu().numpy().reshape(legacy_axes(self.param, b.shape))
                  for b in bottoms]
        glog.info("hdf5_output_layer.cpp:33", f"Saving HDF5 file {self.file_name}")
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            f.create_dataset("data", data=arrays[0])
            f.create_dataset("label", data=arrays[1])
        files.atomic_write(self.file_name, buffer.getvalue())
        glog.info("hdf5_output_layer.cpp:38", f"Successfully saved {arrays[0].shape[0]} rows")
        self.written = True
        return []
