"""Image lists (`relative/path label` lines, e.g. ImageNet's train.txt/val.txt) -> a Datum
database: the job of Caffe's convert_imageset (as create_imagenet.sh runs it), with worker
processes, a progress bar, and bad images reported and skipped instead of ending the run."""
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from sepnets.caffe import images
from sepnets.caffe.db import DatumWriter, MeanAccumulator, array_datum, backend_name, write_mean
from sepnets.caffe.proto import caffe_pb2
from sepnets.datasets import staging
from sepnets.errors import CaffeFileError, UserError

SHOWN_FAILURES = 20
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1

DESCRIPTION = """\
Converts the images of a list file (lines 'PATH LABEL', PATH relative to --root; the label
after the last space) into a LevelDB/LMDB of Datum records, as Caffe's convert_imageset:
keys %08d_PATH with the line number (after --shuffle), color images as uint8 BGR planes
(channels x height x width), decoded as OpenCV's imread does (EXIF orientation applied) and,
with --resize N, resized to N x N with OpenCV's bilinear cv::resize, reproduced exactly:
records are byte-identical to convert_imageset's. With --encoded the image file's own bytes
are stored (re-encoded, JPEG quality 95 or PNG, when resized or of another type than
--encode-type). Images that are missing or cannot be decoded are reported and skipped (their
line numbers are left out of the keys, as convert_imageset does).

The default output is data/imagenet/ilsvrc12_LISTSTEM_BACKEND (train.txt ->
ilsvrc12_train_lmdb), the names of Caffe's create_imagenet.sh, which converts ImageNet with
--resize 256 --shuffle. --mean FILE also writes the per-pixel mean of the stored images as
compute_image_mean would (the authors' GoogLeNet subtracts mean_value 104/117/123 instead).
"""


def read_list(path):
    """[(relative path, label)] of a convert_imageset list file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CaffeFileError(path, f"cannot read the list ({err})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if not line:
            continue
        name, _, label = line.rpartition(" ")
        try:
            value = int(label)
        except ValueError:
            name = ""
        if not name:
            raise CaffeFileError(path, f"line {number}: expected 'PATH LABEL', got {line!r}")
        if not INT32_MIN <= value <= INT32_MAX:
            raise CaffeFileError(path, f"line {number}: label {label} does not fit Datum's int32 label")
        if ".." in Path(name).parts:
            raise CaffeFileError(path, f"line {number}: {name} leaves --root ('..'); list paths are "
                                       "relative to --root")
        entries.append((name, value))
    if not entries:
        raise CaffeFileError(path, "lists no images")
    return entries


def _guess_encoding(name):
    suffix = Path(name).suffix
    return suffix[1:].lower() if suffix else None


def _same_encoding(name, encoding):
    """convert_imageset's matchExt: the file already is in the requested format."""
    ext = _guess_encoding(name)
    return ext == encoding or (encoding == "jpg" and ext == "jpeg")


class Converter:
    """One list entry -> (serialized Datum, stored pixels or None); runs in worker processes."""

    def __init__(self, root, resize=0, encoded=False, encode_type="", with_pixels=False):
        self.root = Path(root)
        self.resize = resize
        self.encoded = encoded or bool(encode_type)
        self.encode_type = encode_type.lower()
        self.with_pixels = with_pixels

    def datum(self, name, label):
        # convert_imageset reads root_folder + name: an absolute name stays below the root
        path = self.root / name.lstrip("/")
        image = images.decode(path)
        if self.resize:
            image = images.resize(image, self.resize, self.resize)
        if not self.encoded:
            planes = images.hwc_to_chw(image)
            datum = array_datum(planes, label, unencoded_flag=True)
            return datum.SerializeToString(), planes if self.with_pixels else None
        encoding = self.encode_type or _guess_encoding(name)
        if not encoding:
            raise images.ImageError("no file extension to take the encoding from; "
                                    "give --encode-type")
        if not self.resize and _same_encoding(name, encoding):
            data = path.read_bytes()
        else:
            data = images.encode(image, encoding)
        datum = caffe_pb2.Datum(data=data, label=label, encoded=True)
        pixels = images.hwc_to_chw(images.decode(data, native=True)) if self.with_pixels else None
        return datum.SerializeToString(), pixels

    def __call__(self, item):
        index, name, label = item
        try:
            value, pixels = self.datum(name, label)
            return index, name, value, pixels, None
        except (images.ImageError, OSError, UserError) as err:
            return index, name, None, None, str(err)


def _results(converter, items, jobs):
    if jobs <= 1:
        yield from map(converter, items)
        return
    with Pool(jobs) as pool:
        yield from pool.imap(converter, items, chunksize=8)


def convert(root, list_path, out, backend="lmdb", resize=0, encoded=False, encode_type="",
            shuffle=False, seed=0, jobs=1, mean=None, force=False, log=print):
    """Builds the database (and mean); returns (records written, [(path, reason)] skipped)."""
    from tqdm import tqdm
    backend = backend_name(backend)
    if not Path(root).is_dir():
        raise UserError(f"{root}: --root is not a directory")
    if resize < 0:
        raise UserError(f"--resize must be >= 0, not {resize}")
    if encode_type and encode_type.lower() not in images.ENCODINGS:
        raise UserError(f"--encode-type {encode_type}: one of {', '.join(sorted(images.ENCODINGS))}")
    outs = [Path(out)] + ([Path(mean)] if mean else [])
    if staging.up_to_date(outs, force, inputs=[root, list_path]):
        log(f"{out}: up to date; --force rebuilds it")
        return None, []
    entries = read_list(list_path)
    if shuffle:
        entries = [entries[i] for i in np.random.default_rng(seed).permutation(len(entries))]
    converter = Converter(root, resize, encoded, encode_type, with_pixels=bool(mean))
    items = [(i, name, label) for i, (name, label) in enumerate(entries)]
    skipped = []
    accumulator = MeanAccumulator()
    with staging.StagedOutputs(outs) as stage:
        with DatumWriter(stage.path(out), backend) as writer, \
                tqdm(total=len(items), desc=Path(out).name, unit="img", dynamic_ncols=True,
                     mininterval=0.5) as bar:
            for index, name, value, pixels, problem in _results(converter, items, jobs):
                bar.update()
                if problem:
                    skipped.append((name, problem))
                    bar.set_postfix(skipped=len(skipped), refresh=False)
                    continue
                writer.put(value, suffix=name, index=index)
                if mean:
                    try:
                        accumulator.add(pixels, name)
                    except UserError as err:
                        raise UserError(f"{err} (use --resize)") from None
            if not writer.count:
                _report_skipped(skipped, len(items), log)
                raise UserError(f"{list_path}: none of the {len(items)} images could be read "
                                f"(under --root {root}); nothing written")
        if mean:
            write_mean(stage.path(mean), accumulator.mean())
    _report_skipped(skipped, len(items), log)
    log(f"wrote {writer.count} of {len(items)} images to {out}"
        + (f", skipped {len(skipped)}" if skipped else "") + (f"; mean {mean}" if mean else ""))
    return writer.count, skipped


def _report_skipped(skipped, total, log):
    if not skipped:
        return
    log(f"skipped {len(skipped)} of {total} images:")
    for name, problem in skipped[:SHOWN_FAILURES]:
        log(f"  {name}: {problem}")
    if len(skipped) > SHOWN_FAILURES:
        log(f"  ... and {len(skipped) - SHOWN_FAILURES} more")
