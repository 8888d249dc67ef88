"""Caffe's Data layer input path: records in key order from LevelDB/LMDB (cycling back to the
first record at the end, like Caffe's cursor), decoded and transformed as Caffe's
DataTransformer does (mean_file or mean_value subtraction, scale, crop: random in TRAIN,
centred in TEST, random mirror), batched ahead of use on a background thread (Caffe's
prefetch)."""
import queue
import threading

import numpy as np

from sepnets.caffe import db, files, glog
from sepnets.errors import CaffeFileError, UserError


class DataTransformer:
    """Caffe's DataTransformer for Datum records, applied to one record at a time."""

    def __init__(self, param, train, datum_shape, rng, where):
        self.scale = np.float32(param.scale)
        self.crop = param.crop_size
        self.mirror = param.mirror
        self.train = train
        self.rng = rng
        self.force_color, self.force_gray = param.force_color, param.force_gray
        if self.force_color and self.force_gray:
            raise UserError(f"{where}: cannot set both force_color and force_gray")
        channels, height, width = datum_shape
        self.mean = None
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
            self.mean_is_image = False
        if self.crop and (height < self.crop or width < self.crop):
            raise UserError(f"{where}: crop_size {self.crop} exceeds the data's {height}x{width}")

    def output_shape(self, datum_shape):
        channels, height, width = datum_shape
        return (channels, self.crop, self.crop) if self.crop else (channels, height, width)

    def __call__(self, values, out):
        """Transforms one (C, H, W) record into `out` (float32, the output shape)."""
        do_mirror = self.mirror and self.rng.integers(2) == 1
        channels, height, width = values.shape
        if self.crop:
            if self.train:
                h = self.rng.integers(height - self.crop + 1)
                w = self.rng.integers(width - self.crop + 1)
            else:
                h, w = (height - self.crop) // 2, (width - self.crop) // 2
            window = (slice(None), slice(h, h + self.crop), slice(w, w + self.crop))
        else:
            window = (slice(None), slice(None), slice(None))
        x = values[window].astype(np.float32)
        if self.mean is not None:
            x -= self.mean[window] if self.mean_is_image else self.mean
        if self.scale != 1:
            x *= self.scale
        out[...] = x[:, :, ::-1] if do_mirror else x


class RecordCursor:
    """Records of a database in key order, starting over after the last one."""

    def __init__(self, source, backend):
        self.source, self.backend = source, backend
        self._records = None

    def next(self):
        for fresh in (self._records is None, True):
            if fresh:
                self._records = db.iter_records(self.source, self.backend)
            for _, value in self._records:
                return value
            glog.info("data_layer.cpp:73", "Restarting data prefetching from start.")
        raise CaffeFileError(self.source, "database is empty")

    def close(self):
        if self._records is not None:
            self._records.close()  # lets the database close once no reader needs it
            self._records = None


class BatchLoader:
    """Makes (data, labels) batches of a Data layer on a background thread, `depth` ahead."""

    def __init__(self, layer, train, rng, depth=None):
        p = layer.data_param
        self.where = f"layer '{layer.name}' (Data)"
        self.batch_size = p.batch_size
        if self.batch_size <= 0:
            raise UserError(f"{self.where}: batch_size must be positive")
        self.source = p.source
        self.cursor = RecordCursor(p.source, p.backend)
        t = layer.transform_param
        first = db.datum_array(db.first_datum(p.source, p.backend), t.force_color, t.force_gray,
                            p.source)
        self.transform = DataTransformer(t, train, first.shape, rng, self.where)
        self.shape = (self.batch_size,) + self.transform.output_shape(first.shape)
        self.queue = queue.Queue(maxsize=max(1, depth or p.prefetch))
        self.stop = threading.Event()
        self.thread = None

    def _make_batch(self):
        t = self.transform
        data = np.empty(self.shape, dtype=np.float32)
        labels = np.empty(self.batch_size, dtype=np.float32)
        for i in range(self.batch_size):
            datum = db.decode_datum(self.cursor.next(), self.source)
            values = db.datum_array(datum, t.force_color, t.force_gray, self.source)
            if t.output_shape(values.shape) != self.shape[1:]:
                raise CaffeFileError(self.source, f"record of shape {values.shape} does not fit "
                                                  f"the batch's {self.shape[1:]}")
            t(values, data[i])
            labels[i] = datum.label
        return data, labels

    def _run(self):
        try:
            while not self.stop.is_set():
                self._put(self._make_batch())
        except BaseException as err:  # handed to the consumer, which raises it
            self._put(err)
        finally:
            self.cursor.close()

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=f"prefetch {self.where}",
                                           daemon=True)
            self.thread.start()
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        else:
            self.cursor.close()

