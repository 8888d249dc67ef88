"""Caffe's DataTransformer (data_transformer.cpp): a prefetching layer's records (Data's Datums,
ImageData's images: sepnets.engine.records) become its output, by the same rule for both (as
Caffe's Datum and cv::Mat Transform compute alike).

On the host, records are height x width x channels arrays (OpenCV's layout: an encoded image
as decoded, a stored Datum's channels x height x width planes seen through a transposed
view; uint8 for `data` and images, float32 for `float_data`). Each record's placement says
where its crop starts and whether it is mirrored:

    crop_size, TRAIN:  a random window (data_transformer.cpp:87-89)
    crop_size, TEST:   the centred window, (H - crop) // 2, (W - crop) // 2 (:91-92)
    mirror:            random, in both phases (:51)

and every value becomes (value - mean) * scale in float32, mean being the mean file's value
at the same pixel or the channel's mean_value (:113-121); a mirrored window is reversed
along the width (:102-103). Two implementations of that arithmetic, proven equal by the
tests: `finish_into`, record by record with numpy into a batch in channels-last order (the
CPU's layout; a worker process writes straight into shared memory), and `finish`, whole
batches with torch on the device their uint8 records were copied to (one kernel per step on
a GPU).

The random choices (drawn by sepnets.engine.data, three integers per record) are turned into
placements here, by one rule: mirror when the first is odd, the crop's row is the second
modulo (H - crop + 1), its column the third modulo (W - crop + 1). Caffe's own random numbers
(Boost's mt19937) are not reproduced.
"""
import numpy as np
import torch

from sepnets.caffe import files, glog
from sepnets.errors import CaffeFileError, UserError


def chw(shape):
    """An H x W x C shape as Caffe's (C, H, W)."""
    return (shape[2], shape[0], shape[1])


class Transform:
    """One Data layer's transform_param, checked as Caffe's DataTransformer checks it."""

    def __init__(self, param, train, datum_shape, where):
        self.where = where
        self.scale = np.float32(param.scale)
        self.crop = param.crop_size
        self.mirror = param.mirror
        self.train = train
        if param.force_color and param.force_gray:  # (the records' decoders apply them)
            raise UserError(f"{where}: cannot set both force_color and force_gray")
        channels, height, width = datum_shape
        self.mean = None  # (C, H, W) for a mean file, (C, 1, 1) for mean values
        self.mean_is_image = False
        if param.HasField("mean_file"):
            if len(param.mean_value):
                raise UserError(f"{where}: cannot specify mean_file and mean_value at the same time")
            glog.info("data_transformer.cpp:25", f"Loading mean file from: {param.mean_file}")
            mean = files.read_blobproto(param.mean_file).astype(np.float32)
            if mean.ndim == 4 and mean.shape[0] == 1:
                mean = mean[0]
            if mean.shape != tuple(datum_shape):
                raise CaffeFileError(param.mean_file, f"mean of shape {mean.shape} does not match "
                                                      f"the data's {tuple(datum_shape)}")
            self.mean, self.mean_is_image = mean, True
        elif len(param.mean_value):
            values = np.asarray(param.mean_value, dtype=np.float32)
            if len(values) not in (1, channels):
                raise UserError(f"{where}: specify either 1 mean_value or as many as channels: "
                                f"{channels}")
            self.mean = np.broadcast_to(values.reshape(-1, 1, 1), (channels, 1, 1)).copy()
        self._check_size(datum_shape)
        self._device_mean = {}

    def _check_size(self, shape):
        if self.crop and (shape[1] < self.crop or shape[2] < self.crop):
            raise UserError(f"{self.where}: crop_size {self.crop} exceeds the data's "
                            f"{shape[1]}x{shape[2]}")

    def output_shape(self, datum_shape):
        channels, height, width = datum_shape
        return (channels, self.crop, self.crop) if self.crop else (channels, height, width)

    # ---------------------------------------------------------------- records
    def placements(self, draws, shapes):
        """(offsets (N, 2) int64, mirror (N,) bool) for records of (C, H, W) `shapes` from
        their draws ((N, 3) non-negative int64): the rule of this module's docstring."""
        draws = np.asarray(draws, np.int64)
        heights = np.asarray([s[1] for s in shapes], np.int64)
        widths = np.asarray([s[2] for s in shapes], np.int64)
        mirror = (draws[:, 0] & 1).astype(bool) if self.mirror else np.zeros(len(draws), bool)
        offsets = np.zeros((len(draws), 2), np.int64)
        if self.crop:
            if self.train:
                offsets[:, 0] = draws[:, 1] % (heights - self.crop + 1)
                offsets[:, 1] = draws[:, 2] % (widths - self.crop + 1)
            else:
                offsets[:, 0] = (heights - self.crop) // 2
                offsets[:, 1] = (widths - self.crop) // 2
        return offsets, mirror

    def _window(self, image, offset, mirror):
        """The record's (H x W x C) crop window, reversed along the width if mirrored."""
        if self.crop:
            h, w = offset
            image = image[h:h + self.crop, w:w + self.crop]
        return image[:, ::-1] if mirror else image

    # ---------------------------------------------------------------- values
    def finish_into(self, out, image, offset, mirror):
        """One record's output values written into `out` (a crop x crop x C float32 view):
        (window - mean window) * scale, one pass with numpy."""
        window = self._window(image, offset, mirror)
        if self.mean is not None:
            mean = self.mean.transpose(1, 2, 0)  # H x W x C, or 1 x 1 x C for mean values
            np.subtract(window, self._window(mean, offset, mirror) if self.mean_is_image else mean,
                        out=out)
            if self.scale != 1:
                np.multiply(out, self.scale, out=out)
        elif self.scale != 1:
            np.multiply(window, self.scale, out=out)
        else:
            out[...] = window

    def stack(self, images, offsets, mirror):
        """Records of one batch for the device: one N x H x W x C array. Records of different
        sizes (encoded images, which a crop makes equal) are cropped and mirrored here, one by
        one (then offsets 0, no mirror); no mean file can go with them (its shape must be
        every record's)."""
        shape = images[0].shape
        if all(a.shape == shape for a in images):
            return np.stack(images), offsets, mirror
        for a in images:
            self._check_size(chw(a.shape))
            if a.shape[2] != shape[2]:
                raise UserError(f"{self.where}: records with {shape[2]} and {a.shape[2]} channels "
                                "in one batch")
        if not self.crop:
            raise UserError(f"{self.where}: records of sizes {shape[:2]} and "
                            f"{next(a.shape[:2] for a in images if a.shape != shape)} in one batch "
                            "need a crop_size")
        windows = [self._window(a, o, m) for a, o, m in zip(images, offsets, mirror)]
        return np.stack(windows), np.zeros_like(offsets), np.zeros_like(mirror)

    def finish(self, records, offsets, mirror):
        """An (N, C, H, W) tensor of records (uint8 or float32, any memory layout, on any
        device) -> the layer's float32 output there: crop, mirror, mean, scale."""
        device = records.device
        offsets = torch.as_tensor(offsets).to(device, non_blocking=True)
        mirror = torch.as_tensor(mirror).to(device, non_blocking=True)
        size = (self.crop, self.crop) if self.crop else tuple(records.shape[2:])
        x = windows(records, offsets, mirror, size)
        if self.mean is not None:
            if device not in self._device_mean:
                self._device_mean[device] = torch.from_numpy(self.mean).to(device)
            mean = self._device_mean[device]
            if self.mean_is_image:
                mean = windows(mean.expand(len(x), *mean.shape), offsets, mirror, size)
            x = x.float() - mean  # a new tensor: the records are never changed
        elif self.scale != 1:
            return x.float() * float(self.scale)
        else:
            return x.float()
        if self.scale != 1:
            x *= float(self.scale)  # a float32 scalar: float32 arithmetic, as Caffe's
        return x

    def __getstate__(self):  # worker processes get the numpy mean, not device copies
        state = dict(self.__dict__)
        state["_device_mean"] = {}
        return state


def windows(x, offsets, mirror, size):
    """The (h, w)-offset windows of `size` of an (N, C, H, W) tensor, reversed along the width
    where `mirror`: one indexing of a view of every window (one kernel on a GPU)."""
    n, _, height, width = x.shape
    if (height, width) == tuple(size) and not bool(mirror.any()):
        return x
    every = x.unfold(2, size[0], 1).unfold(3, size[1], 1)  # N, C, rows, columns, h, w
    out = every[torch.arange(n, device=x.device), :, offsets[:, 0], offsets[:, 1]]
    return torch.where(mirror[:, None, None, None], out.flip(-1), out) if bool(mirror.any()) else out
