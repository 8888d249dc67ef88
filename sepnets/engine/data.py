"""The input path of Caffe's prefetching data layers: records (Data: Datum records in key
order from LevelDB/LMDB; ImageData: the images of a list file, decoded by OpenCV as Caffe's
ReadImageToCVMat does), cycling back to the first at the end as Caffe's cursors do,
transformed as Caffe's DataTransformer does (mean_file or mean_value subtraction, scale, crop:
random in TRAIN, centred in TEST, random mirror), batched ahead of use on a background thread
(Caffe's prefetch)."""
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from sepnets.caffe import db, files, glog
from sepnets.errors import CaffeFileError, UserError


class DataTransformer:
    """Caffe's DataTransformer, applied to one (C, H, W) record at a time: its Datum and
    cv::Mat forms compute alike ((pixel - mean) * scale, crop, mirror)."""

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


class DatumRecords:
    """The Data layer's records: (values, label) of each Datum, decoded as Caffe does."""

    def __init__(self, layer):
        p, t = layer.data_param, layer.transform_param
        self.source, self.force = p.source, (t.force_color, t.force_gray)
        self.cursor = RecordCursor(p.source, p.backend)
        self.first_shape = db.datum_array(db.first_datum(p.source, p.backend), *self.force,
                                          p.source).shape

    def next(self):
        datum = db.decode_datum(self.cursor.next(), self.source)
        return db.datum_array(datum, *self.force, self.source), datum.label

    def close(self):
        self.cursor.close()


def read_image(path, new_height, new_width, is_color):
    """Caffe's ReadImageToCVMat: cv::imread in colour (BGR) or grayscale, resized to
    new_width x new_height (cv::resize's default, bilinear) when both are given; as a
    (C, H, W) uint8 array."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise CaffeFileError(path, "Could not open or find file (OpenCV cannot read it as an "
                                   "image)")
    if new_height > 0 and new_width > 0:
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    return image.transpose(2, 0, 1) if image.ndim == 3 else image[None]


def read_image_list(source):
    """ImageData's list file: one `path label` a line, split at the last space (atoi label)."""
    try:
        text = Path(source).read_text()
    except OSError as err:
        raise CaffeFileError(source, f"cannot read the image list: {err.strerror}") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        path, _, label = line.rpartition(" ")
        try:
            lines.append((path, int(label)))
        except ValueError:
            raise CaffeFileError(source, f"line {number}: expected 'path label', got "
                                         f"{line!r}") from None
    if not lines:
        raise CaffeFileError(source, "File is empty")
    return lines


class ImageRecords:
    """ImageData's records: the list's images in order (shuffled at the start and after each
    pass with `shuffle`), from a first line chosen at random below rand_skip."""

    def __init__(self, layer, rng):
        p = layer.image_data_param
        self.rng = rng
        self.root = p.root_folder
        self.size = (p.new_height, p.new_width, p.is_color)
        glog.info("image_data_layer.cpp:38", f"Opening file {p.source}")
        self.lines = read_image_list(p.source)
        self.shuffle = p.shuffle
        if self.shuffle:
            glog.info("image_data_layer.cpp:53", "Shuffling data")
            self.rng.shuffle(self.lines)
        glog.info("image_data_layer.cpp:63", f"A total of {len(self.lines)} images.")
        self.position = 0
        if p.rand_skip:
            skip = int(self.rng.integers(p.rand_skip))
            glog.info("image_data_layer.cpp:70", f"Skipping first {skip} data points.")
            if skip >= len(self.lines):
                raise CaffeFileError(p.source, "Not enough points to skip")
            self.position = skip
        self.first_shape = self._read(self.lines[self.position][0]).shape

    def _read(self, path):
        return read_image(self.root + path, *self.size)

    def next(self):
        path, label = self.lines[self.position]
        self.position += 1
        if self.position == len(self.lines):
            self.position = 0
            if self.shuffle:
                self.rng.shuffle(self.lines)
        return self._read(path), label

    def close(self):
        pass


class BatchLoader:
    """Makes (data, labels) batches from `records` (next() -> ((C, H, W) values, label)) on
    a background thread, `depth` batches ahead."""

    def __init__(self, records, transform_param, batch_size, train, rng, where, depth=1):
        self.where = where
        self.records = records
        self.batch_size = batch_size
        if self.batch_size <= 0:
            raise UserError(f"{self.where}: batch_size must be positive")
        self.transform = DataTransformer(transform_param, train, records.first_shape, rng, where)
        self.shape = (self.batch_size,) + self.transform.output_shape(records.first_shape)
        self.queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = None

    def _make_batch(self):
        data = np.empty(self.shape, dtype=np.float32)
        labels = np.empty(self.batch_size, dtype=np.float32)
        for i in range(self.batch_size):
            values, labels[i] = self.records.next()
            if self.transform.output_shape(values.shape) != self.shape[1:]:
                raise UserError(f"{self.where}: a record of shape {values.shape} does not fit the "
                                f"batch's {self.shape[1:]} (the engine keeps a data layer's "
                                "shape; resize or crop the inputs to one size)")
            self.transform(values, data[i])
        return data, labels

    def _run(self):
        try:
            while not self.stop.is_set():
                self._put(self._make_batch())
        except BaseException as err:  # handed to the consumer, which raises it
            self._put(err)
        finally:
            self.records.close()

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
            self.records.close()
