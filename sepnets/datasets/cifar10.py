"""CIFAR-10 in the three versions the SEP-Nets authors compared (their README, "Experiments on
CIFAR10 with ResNet"), as float Datum databases with mean files."""
import importlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from sepnets import names
from sepnets.caffe.db import MeanAccumulator, array_datum, backend_name, write_mean, write_records
from sepnets.datasets import staging
from sepnets.errors import CaffeFileError, UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# the archive's md5 as published with it and checked by torchvision (datasets/cifar.py, tgz_md5)
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
SIDE = 32
PIXELS = 3 * SIDE * SIDE
# Goodfellow et al.'s maxout preprocessing, followed by NIN: pylearn2's
# CIFAR10(gcn=55.) and ZCA() defaults (scripts/datasets/make_cifar10_gcn_whitened.py)
GCN_SCALE = 55.0
GCN_MIN_DIVISOR = 1e-8
ZCA_FILTER_BIAS = 0.1
# SEP-Nets README, version (3): "additional 4 pixels padded on each side"
PAD = 4
VARIANTS = ("nin", "highway", "highway-padded")
KEY_DIGITS = 5  # convert_cifar_data's keys (caffe::format_int(i, 5))

DESCRIPTION = f"""\
Builds CIFAR-10 in one of the three versions the SEP-Nets authors compared, as float Datum
databases (Datum.float_data, channels R,G,B as in the archive) with mean files:

  nin             (1) "CIFAR-10 dataset download from NIN": global contrast normalization
                  + ZCA whitening, as Network in Network (Lin et al. 2014) took it from
                  maxout (Goodfellow et al. 2013), i.e. pylearn2's
                  scripts/datasets/make_cifar10_gcn_whitened.py.
  highway         (2) "CIFAR-10 dataset download from Highway Network": global contrast
                  normalization only.
  highway-padded  (3) like (2), the training images then padded with {PAD} zero pixels on
                  each side (40x40); Caffe crops 32x32 windows back out (transform_param
                  crop_size: 32, mirror: true) with paddedmean.binaryproto, as in the
                  authors' resnet20 prototxt. The test images stay 32x32 (mean.binaryproto).

Formulas, per image x (the 3072 values 0..255 of one image, as floats):
  GCN  x <- x - mean(x);  x <- {GCN_SCALE:g} * x / sqrt(sum(x^2))
       (pylearn2 global_contrast_normalize(X, scale={GCN_SCALE:g}): subtract_mean, L2 norm,
       sqrt_bias 0, the divisor replaced by 1 when below {GCN_MIN_DIVISOR:g})
  ZCA  fitted on the GCN'd training set (N images): mu = mean over images,
       C = (X-mu)^T (X-mu) / N + {ZCA_FILTER_BIAS:g} I = V diag(l) V^T,
       P = V diag(l^-1/2) V^T;  x <- (x - mu) P   for training and test images
       (pylearn2 ZCA() defaults: filter_bias {ZCA_FILTER_BIAS:g}, all components kept)
Sources: the NIN data the authors link (ebenolson's gist of the NIN CIFAR-10 model) comes
without its preprocessing code; the NIN paper (sec. 4.2) says it used the global contrast
normalization and ZCA whitening of Goodfellow et al.'s maxout networks, whose data is made
by pylearn2's make_cifar10_gcn_whitened.py (read for the formulas above). The
Highway Networks repository (flukeskywalker/highway-networks) publishes only its
preprocessed LevelDBs, described as "global contrast normalized and padded with 8 pixels
each side", without code or constants: versions (2) and (3) use the GCN above (scale 55
makes the per-image standard deviation about 1, as sqrt(3072) = 55.4), and --pad 4 follows
the SEP-Nets README ("additional 4 pixels padded on each side"); --pad 8 gives the Highway
README's 48x48.
Each step is computed in float64 (pylearn2 used float32); values are kept as float32
between the steps and in the databases. mean.binaryproto is the per-pixel mean of the
stored 32x32 training images, paddedmean.binaryproto that of the padded ones.

Outputs (under --out, default data/cifar10/VARIANT): train_BACKEND, test_BACKEND,
mean.binaryproto (+ paddedmean.binaryproto). Without --archive the official archive is
taken from --download-dir (default data/cifar10), downloaded there first when missing, and
checked against its md5 {MD5}.
"""


class _BatchUnpickler(pickle.Unpickler):
    """Loads a CIFAR-10 batch pickle, allowing only what those files contain (numpy arrays,
    Python 2 strings), so an untrusted archive cannot run code."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            core = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
            return importlib.import_module(core)._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")


def _batch(path, tar, members, name):
    member = members.get(name)
    if member is None:
        raise CaffeFileError(path, f"has no cifar-10-batches-py/{name}; expected the CIFAR-10 "
                                   "python version (cifar-10-python.tar.gz)")
    try:
        batch = _BatchUnpickler(io.BytesIO(tar.extractfile(member).read()), encoding="bytes").load()
    except Exception as err:  # a truncated or foreign pickle raises many kinds of errors
        raise CaffeFileError(path, f"{member.name}: not a CIFAR-10 batch ({err})") from None
    if not isinstance(batch, dict):
        raise CaffeFileError(path, f"{member.name}: not a CIFAR-10 batch (a {type(batch).__name__})")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        raise CaffeFileError(path, f"{member.name}: 'data' is not an N x {PIXELS} uint8 array")
    labels = np.asarray(labels if labels is not None else [], np.int64)
    if labels.shape != (len(data),) or labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CaffeFileError(path, f"{member.name}: 'labels' is not {len(data)} labels 0..9")
    return data, labels


def load_archive(path):
    """cifar-10-python.tar.gz -> (train_x, train_y, test_x, test_y); x: N x 3072 uint8 rows
    (1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane)."""
    path = Path(path)
    if not path.is_file():
        raise CaffeFileError(path, "no such file")
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            train = [_batch(path, tar, members, name) for name in TRAIN_BATCHES]
            test_x, test_y = _batch(path, tar, members, TEST_BATCH)
    except tarfile.ReadError:
        raise CaffeFileError(path, "is not a tar archive; expected the CIFAR-10 python version "
                                   "(cifar-10-python.tar.gz)") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CaffeFileError(path, f"is truncated or damaged ({reason})") from None
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            test_x, test_y)


def gcn(x, scale=GCN_SCALE, min_divisor=GCN_MIN_DIVISOR):
    """Global contrast normalization of each row (pylearn2 global_contrast_normalize with
    subtract_mean=True, use_std=False, sqrt_bias=0)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    divisors = np.sqrt((x * x).sum(axis=1)) / scale
    divisors[divisors < min_divisor] = 1.0
    return x / divisors[:, None]


def _chunks(n, desc, size=5000):
    """Row slices of n rows, with a progress bar (in images) named `desc`."""
    from tqdm import tqdm
    with tqdm(total=n, desc=desc, unit="img", dynamic_ncols=True, mininterval=0.5) as bar:
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))
            bar.update(min(size, n - start))


def zca_fit(x, filter_bias=ZCA_FILTER_BIAS):
    """(mean, P) of pylearn2's ZCA on the rows of x."""
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((x.shape[1], x.shape[1]))
    for rows in _chunks(len(x), "ZCA covariance"):
        centered = x[rows] - mean
        cov += centered.T @ centered
    cov = cov / len(x) + filter_bias * np.eye(x.shape[1])
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    return mean, (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T


def _rowwise(x, step, desc, out=None):
    """float32 result of `step` (float64 math) applied to x in chunks of rows (into `out`,
    which may be x itself: each chunk is read before it is overwritten)."""
    out = np.empty(x.shape, np.float32) if out is None else out
    for rows in _chunks(len(x), desc):
        out[rows] = step(x[rows])
    return out


def gcn_images(x, scale=GCN_SCALE):
    return _rowwise(x, lambda rows: gcn(rows, scale), "GCN")


def zca_apply(x, zca):
    """x <- (x - mean) P, in place (x is float32): the full training set is 600 MB."""
    mean, whitening = zca
    return _rowwise(x, lambda rows: (rows - mean) @ whitening, "ZCA", out=x)


def outputs(out_dir, variant, backend):
    return {role: Path(path)
            for role, path in names.cifar10_files(variant, backend, out_dir).items()}


def _records(images, labels, mean=None, padded_mean=None, pad=0):
    """Datums of the images (zero-padded by `pad`), accumulating the means of what is stored."""
    for image, label in zip(images, labels):
        if mean is not None:
            mean.add(image)
        if pad:
            image = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
            padded_mean.add(image)
        yield array_datum(image, label)


def prepare(archive, variant, backend, out_dir, pad=PAD, scale=GCN_SCALE,
            filter_bias=ZCA_FILTER_BIAS, force=False, log=print):
    """Builds the databases and mean files of one variant; returns {output: path}."""
    if variant not in VARIANTS:
        raise UserError(f"unknown variant '{variant}' (one of {', '.join(VARIANTS)})")
    backend = backend_name(backend)
    if pad < 0:
        raise UserError(f"--pad must be >= 0, not {pad}")
    outs = outputs(out_dir, variant, backend)
    means = [p for k, p in outs.items() if k.endswith("mean")]
    given = None if callable(archive) else archive
    if staging.up_to_date(outs.values(), force, derived=means, inputs=[given]):
        log(f"{Path(out_dir)}: {variant} ({backend}) is up to date; --force rebuilds it")
        return outs
    train_x, train_y, test_x, test_y = load_archive(archive() if callable(archive) else archive)
    log(f"{len(train_x)} training and {len(test_x)} test images; preprocessing ({variant})")
    train, test = gcn_images(train_x, scale), gcn_images(test_x, scale)
    if variant == "nin":
        zca = zca_fit(train, filter_bias)
        train, test = zca_apply(train, zca), zca_apply(test, zca)
    train, test = train.reshape(-1, 3, SIDE, SIDE), test.reshape(-1, 3, SIDE, SIDE)
    pad = pad if variant == "highway-padded" else 0
    with staging.StagedOutputs(outs.values()) as stage:
        mean, padded_mean = MeanAccumulator(), MeanAccumulator()
        write_records(stage.path(outs["train"]), backend,
                      _records(train, train_y, mean, padded_mean, pad), total=len(train),
                      desc=outs["train"].name, key_digits=KEY_DIGITS)
        write_records(stage.path(outs["test"]), backend, _records(test, test_y), total=len(test),
                      desc=outs["test"].name, key_digits=KEY_DIGITS)
        write_mean(stage.path(outs["mean"]), mean.mean())
        if pad:
            write_mean(stage.path(outs["paddedmean"]), padded_mean.mean())
    side = SIDE + 2 * pad
    log(f"wrote {outs['train']} ({len(train)} x 3x{side}x{side} float), {outs['test']} "
        f"({len(test)} x 3x{SIDE}x{SIDE} float), " + ", ".join(p.name for p in means))
    return outs
