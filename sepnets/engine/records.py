"""The records a prefetching data layer reads, as its input pipeline (sepnets.engine.data)
takes them. A record source hands out cheap values (a database value's bytes, an image's
path) in the layer's order, on the prefetch thread; its `decode`, a small picklable object
that the worker processes run, turns one value into (height x width x channels array,
label) in OpenCV's layout. The pipeline draws, decodes, transforms (one DataTransformer:
sepnets.engine.transform) and batches the same way for every source.

    DatumSource      Data (data_layer.cpp): a LevelDB/LMDB's Datum values in key order,
                     round and round, each counted (offset_); with several ranks a TRAIN
                     layer keeps those whose offset is its rank modulo the world size
                     (DataLayer::Skip, data_layer.cpp:59-67), TEST layers keep every one.
    ImageListSource  ImageData (image_data_layer.cpp): the list file's `path label` lines,
                     shuffled at the start and after each pass with `shuffle`, from a first
                     line below rand_skip; each image read by OpenCV as ReadImageToCVMat
                     does. Every rank reads the whole list: ImageDataLayer has no Skip()
                     (Caffe 1.0's multi-GPU ImageData differs between ranks only by the
                     shuffle and rand_skip each rank draws from its own seed, random_seed +
                     rank), so the engine's does the same. Caffe's ranks > 0 warn when a
                     TRAIN list has neither (:58-61); the engine's other ranks print errors
                     only, so rank 0 warns for them.
"""
from pathlib import Path

from sepnets.caffe import db, glog, images
from sepnets.engine import distributed
from sepnets.errors import CaffeFileError


class RecordStream:
    """Caffe's DataLayer cursor: database values in key order, round and round, each counted
    (offset_); with `size` > 1 only those at offsets equal to `rank` modulo `size` are kept."""

    def __init__(self, source, backend, rank=0, size=1):
        self.source, self.backend = source, backend
        self.rank, self.size = rank, size
        self.offset = 0
        self._records = None

    def next(self):
        while True:
            value = self._advance()
            keep = self.offset % self.size == self.rank
            self.offset += 1
            if keep:
                return value

    def _advance(self):
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


class DatumDecoder:
    """A database value -> (H x W x C array, label): db.record_image with transform_param's
    force_color / force_gray (DataTransformer decodes encoded records with them)."""

    def __init__(self, force_color, force_gray, source):
        self.force_color, self.force_gray, self.source = force_color, force_gray, source

    def __call__(self, value):
        return db.record_image(value, self.force_color, self.force_gray, self.source)


class DatumSource:
    """The Data layer's records: this rank's share of its database's stream."""
    STAGEABLE = True  # a fixed order: -stage_data can form the same batches in device memory

    def __init__(self, layer, rank=0, size=1):
        p, t = layer.data_param, layer.transform_param
        self.source, self.backend = p.source, p.backend
        self.stream = RecordStream(p.source, p.backend, rank, size)
        self.rank, self.size = rank, size
        self.decode = DatumDecoder(t.force_color, t.force_gray, p.source)
        self.first = self.decode(db.first_value(p.source, p.backend))[0]

    @classmethod
    def of_this_rank(cls, layer, train):
        """A TRAIN layer reads its rank's records; a TEST layer (only rank 0 tests) all of them
        (Skip keeps every record in TEST, data_layer.cpp:63-64)."""
        world = distributed.current()
        return cls(layer, world.rank, world.size) if train else cls(layer)

    def next(self):
        return self.stream.next()

    def every_value(self):
        """Each value of the database once, in key order (staging, whole-database reading)."""
        return (value for _, value in db.iter_records(self.source, self.backend))

    def close(self):
        self.stream.close()


def read_image(path, new_height, new_width, is_color):
    """ImageData's image (ReadImageToCVMat): H x W x C uint8, BGR or 1 channel."""
    try:
        return images.read(path, new_height, new_width, is_color)
    except images.ImageError as err:
        raise CaffeFileError(path, f"Could not load the image ({err})") from None


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


class ImageDecoder:
    """A list line (path, label) -> (the image read from root_folder + path, label)."""

    def __init__(self, param):
        self.root, self.source = param.root_folder, param.source
        self.size = (param.new_height, param.new_width, param.is_color)

    def __call__(self, value):
        path, label = value
        return read_image(self.root + path, *self.size), label


class ImageListSource:
    """ImageData's records: the list's lines in order (shuffled at the start and after each
    pass with `shuffle`), from a first line chosen at random below rand_skip; `rng` is the
    list's own generator (Caffe's prefetch_rng_, apart from the transformer's)."""
    STAGEABLE = False  # reshuffled each pass, every rank its own order: read, never staged

    def __init__(self, layer, rng, train):
        p = layer.image_data_param
        self.rng, self.source = rng, p.source
        self.decode = ImageDecoder(p)
        glog.info("image_data_layer.cpp:38", f"Opening file {p.source}")
        self.lines = read_image_list(p.source)
        self.shuffle = p.shuffle
        if self.shuffle:
            glog.info("image_data_layer.cpp:53", "Shuffling data")
            self.rng.shuffle(self.lines)
        elif train and distributed.current().size > 1 and not p.rand_skip:
            glog.warning("image_data_layer.cpp:60", "Shuffling or skipping recommended for "
                                                    "multi-GPU")
        glog.info("image_data_layer.cpp:63", f"A total of {len(self.lines)} images.")
        self.position = 0
        if p.rand_skip:
            skip = int(self.rng.integers(p.rand_skip))
            glog.info("image_data_layer.cpp:70", f"Skipping first {skip} data points.")
            if skip >= len(self.lines):
                raise CaffeFileError(p.source, "Not enough points to skip")
            self.position = skip
        self.first = self.decode(self.lines[self.position])[0]

    def next(self):
        line = self.lines[self.position]
        self.position += 1
        if self.position == len(self.lines):  # Caffe's DLOG "Restarting": not in its log
            self.position = 0
            if self.shuffle:
                self.rng.shuffle(self.lines)
        return line

    def close(self):
        pass
