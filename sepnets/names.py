"""Every file name the toolkit reads back or writes, decided once (standard library only, so
every part may import it).

- Caffe's own: snapshots `<prefix>_iter_<N>.caffemodel` / `.solverstate` (solver.cpp:451
  SnapshotFilename), the write probe `<prefix>_iter_0.tempfile` (solver.cpp:61
  CheckSnapshotWritePermissions).
- Safe writing and resuming: an atomic write's temporary file `.<name>.XXXXXXXX.tmp` beside
  its output, a snapshot moved aside as damaged `<name>.damaged` (`.damaged.2`, ...), the run
  locks `models/<name>/.workspace.lock` and `<dir>/.<prefix name>.snapshot.lock`.
- Pattern binarization: `<stem>_quant_<filters>_<offset>.caffemodel` beside the trained model
  (stem: the model's name without .caffemodel; filters: the filter specs joined by `_`, e.g.
  3x3_5x5; offset: offset_text), the fine-tune files `train_val_fix_<filters>_pattern.prototxt`
  and `solver_fix_<filters>_pattern.prototxt` with snapshot_prefix `<prefix>_fix_<filters>_pattern`
  (the authors' names), and `--stats` figures `<layer>_patterns.png`.
- ONNX exports: `<stem>.onnx` beside the caffemodel, `<stem>_bq.onnx` with --bq.
- Training-log tables: `PREFIX.train.csv`, `PREFIX.test.csv`, `PREFIX.test1.csv` ...
  (`PREFIX.<log name>.train.csv` ... for several trainings).
- Databases the data targets build and the generated prototxts read, under data/.
- A workspace (the procedure's): models/<name>/ and logs/<name>/ and the files in them.
"""
import os
import re
from pathlib import Path

# ---------------------------------------------------------------- Caffe's snapshots

SNAPSHOT_KINDS = ("caffemodel", "solverstate")
_SNAPSHOT = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)$")


def snapshot(prefix, iteration, kind):
    """`<prefix>_iter_<N>.<kind>` (kind: caffemodel, solverstate, tempfile), as Caffe names it."""
    return f"{prefix}_iter_{iteration}.{kind}"


def snapshot_iteration(name):
    """The N of a `..._iter_N.caffemodel|solverstate` name, or None."""
    m = _SNAPSHOT.search(str(name))
    return int(m.group(1)) if m else None


def snapshots(prefix, kind):
    """[(iteration, path)] of the files `<prefix>_iter_N.<kind>` that exist, oldest first."""
    prefix = Path(prefix)
    found = []
    for path in prefix.parent.glob(f"{prefix.name}_iter_*.{kind}"):
        it = snapshot_iteration(path.name)
        if it is not None and path.name == Path(snapshot(prefix, it, kind)).name:
            found.append((it, path))
    return sorted(found)


# ---------------------------------------------------------------- writing safely, resuming

NAME_MAX = 255          # bytes in one file name (Linux, macOS)
TEMP_SUFFIX = ".tmp"
TEMP_RANDOM = 8         # the random characters tempfile.mkstemp puts between prefix and suffix
_TEMP_STEM_MAX = NAME_MAX - 2 - TEMP_RANDOM - len(TEMP_SUFFIX)


def _fit(name, size):
    """`name` cut to at most `size` UTF-8 bytes (on a character boundary)."""
    return name.encode()[:size].decode("utf-8", "ignore")


def temp_affixes(name):
    """(prefix, suffix) of the temporary file an atomic write of `name` makes beside it:
    `.<name>.XXXXXXXX.tmp`, `name` shortened when the whole would exceed NAME_MAX."""
    return f".{_fit(name, _TEMP_STEM_MAX)}.", TEMP_SUFFIX


def temp_target(entry):
    """The (possibly shortened) name a temporary file `.<name>.XXXXXXXX.tmp` was for, or None."""
    tail = 1 + TEMP_RANDOM + len(TEMP_SUFFIX)
    if not (entry.startswith(".") and entry.endswith(TEMP_SUFFIX) and len(entry) > tail + 1
            and entry[-tail] == "."):
        return None
    return entry[1:-tail]


def snapshot_temps(prefix):
    """The temporary files that interrupted atomic writes of `<prefix>_iter_N.caffemodel` or
    `.solverstate` left beside them (what the engine's snapshot leaves when killed)."""
    prefix = Path(prefix)
    directory = prefix.parent if str(prefix.parent) else Path(".")
    start = f"{prefix.name}_iter_"
    found = []
    for entry in sorted(directory.glob(".*" + TEMP_SUFFIX)):
        target = temp_target(entry.name)
        if target is None:
            continue
        whole = target.startswith(start) and snapshot_iteration(target) is not None and \
            target == Path(snapshot(prefix, snapshot_iteration(target), target.rsplit(".", 1)[1])).name
        cut = len(target.encode()) >= _TEMP_STEM_MAX - 3 and (target.startswith(start) or
                                                              start.startswith(target))
        if whole or cut:
            found.append(entry)
    return found


DAMAGED = ".damaged"


def damaged(path):
    """Where a damaged file is moved aside: `<name>.damaged`, or `.damaged.2`, `.damaged.3`, ...
    when that exists (nothing is ever replaced)."""
    path = Path(path)
    candidate = path.with_name(path.name + DAMAGED)
    n = 2
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.name}{DAMAGED}.{n}")
        n += 1
    return candidate


WORKSPACE_LOCK = ".workspace.lock"   # in models/<name>/: held by train, quant, finetune, eval, demo


def snapshot_lock(prefix):
    """The lock a training run holds on its snapshot_prefix: `<dir>/.<prefix name>.snapshot.lock`."""
    prefix = Path(prefix)
    return prefix.with_name(f".{prefix.name}.snapshot.lock")


# ---------------------------------------------------------------- pattern binarization

MEAN = "mean"  # the offset's place in a name when every filter has its own scale


def filters_tag(specs):
    """Filter specs (their texts: '3x3', '5x5', 'kxk') as they appear in file names: 3x3_5x5."""
    return "_".join(specs)


def offset_text(offset):
    """An offset as it appears in file names and tables: 0.06, 0.1, 1e-05, or 'mean' (None).

    The offset is applied as a float32 (the blobs' type), so its text is the shortest decimal
    that reads back as the same float32 (numpy's unique formatting): lossless, two offsets
    share a name exactly when they make the same model; positional from 1e-4 to 1e6,
    scientific outside, as %g writes them."""
    if offset is None:
        return MEAN
    import numpy as np  # only here: names is imported by everything, numpy by most
    value = np.float32(offset)
    if value and not 1e-4 <= abs(value) < 1e6:
        return np.format_float_scientific(value, unique=True, trim="-")
    return np.format_float_positional(value, unique=True, trim="-")


def model_stem(model_path):
    """A caffemodel's name without .caffemodel."""
    name = Path(model_path).name
    return name[:-len(".caffemodel")] if name.endswith(".caffemodel") else Path(name).stem


QUANTIZED = "{stem}_quant_{tag}_{offset}.caffemodel"


def quantized_model(model_path, tag, offset):
    """The patterned model quant_pattern.py writes beside `model_path`."""
    path = Path(model_path)
    return path.with_name(QUANTIZED.format(stem=model_stem(path), tag=tag,
                                           offset=offset_text(offset)))


def onnx_model(model_path, bq=False):
    """The ONNX file tools/export_onnx.py writes beside a caffemodel by default."""
    path = Path(model_path)
    return path.with_name(model_stem(path) + ("_bq.onnx" if bq else ".onnx"))


def fine_tune_net(tag):
    return f"train_val_fix_{tag}_pattern.prototxt"


def fine_tune_solver(tag):
    return f"solver_fix_{tag}_pattern.prototxt"


def fine_tune_prefix(prefix, tag):
    """The fine-tuning's snapshot_prefix, from the training's."""
    return f"{prefix}_fix_{tag}_pattern"


def layer_file_name(layer_name):
    """A layer name as a file name (GoogLeNet's names contain '/')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", layer_name).strip("_") or "layer"


def pattern_figure(layer_name):
    return f"{layer_file_name(layer_name)}_patterns.png"


def pattern_figures(layer_names):
    """{layer: figure name} for several layers, every name distinct: a layer whose name maps
    to one already taken (`x/y`, `x_y` and `x y` all map to x_y) gets `_2`, `_3`, ... in net
    order; compared without case, for case-insensitive file systems."""
    taken, out = set(), {}
    for name in layer_names:
        stem = layer_file_name(name)
        candidate, n = stem, 2
        while candidate.lower() in taken:
            candidate = f"{stem}_{n}"
            n += 1
        taken.add(candidate.lower())
        out[name] = f"{candidate}_patterns.png"
    return out


# ---------------------------------------------------------------- training-log tables

def log_table(prefix, kind, label=None):
    """parse_log.py-style table `PREFIX[.<label>].<kind>.csv` (kind: train, test, test1, ...);
    a trailing .csv on PREFIX is dropped; label tells several trainings apart."""
    prefix = str(prefix)
    prefix = prefix[:-4] if prefix.endswith(".csv") else prefix
    middle = "" if label is None else "." + re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
    return Path(f"{prefix}{middle}.{kind}.csv")


# ---------------------------------------------------------------- databases under data/

MNIST_DIR = "data/mnist"
CIFAR10_DIR = "data/cifar10"
IMAGENET_DIR = "data/imagenet"


def mnist_db(part, backend="lmdb", directory=MNIST_DIR):
    """data/mnist/mnist_{train,test}_{lmdb,leveldb} (Caffe's examples/mnist names)."""
    return f"{directory}/mnist_{part}_{backend}"


def cifar10_dir(variant):
    return f"{CIFAR10_DIR}/{variant}"


def cifar10_files(variant, backend="leveldb", directory=None):
    """{role: path} of one CIFAR-10 variant, in data/cifar10/<variant>/ by default: the
    databases, each set's mean, and the padded training set's own mean."""
    base = directory or cifar10_dir(variant)
    files = {"train": f"{base}/train_{backend}", "test": f"{base}/test_{backend}",
             "mean": f"{base}/mean.binaryproto"}
    if variant == "highway-padded":
        files["paddedmean"] = f"{base}/paddedmean.binaryproto"
    return files


def imagenet_db(part, backend="lmdb"):
    """data/imagenet/ilsvrc12_{train,val}_lmdb (Caffe's examples/imagenet names; part: the
    list file's stem)."""
    return f"{IMAGENET_DIR}/ilsvrc12_{part}_{backend}"


IMAGENET_MEAN = f"{IMAGENET_DIR}/mean.binaryproto"

# the make target that builds each data directory (named when a net's database is missing)
DATA_TARGETS = {MNIST_DIR: "data-mnist", CIFAR10_DIR: "data-cifar10", IMAGENET_DIR: "data-imagenet"}


# ---------------------------------------------------------------- a workspace's files

TRAIN_LOG = "train.log"            # logs/<name>/: appended, as the authors' `2>&1 | tee`
FINETUNE_LOG = "finetune.log"
QUANT_LOG = "quant.log"
DATA_LOG = "data.log"
PLOT_LOG = "plot.log"
SWEEP_CSV = "sweep.csv"            # the offset sweep, with the kept offset marked
EVAL_JSON = "eval.json"            # `caffe test` of full / patterned / refined
ONNX_JSON = "onnx.json"            # an ONNX export: its size and ONNX Runtime's test accuracy
RESULTS_MD = "results.md"
CURVES_PNG = "curves.png"
CURVES_CSV = "curves.csv"          # the log tables' prefix: curves.train.csv, curves.test.csv


def quant_record(tag):
    """logs/<name>/quant_<filters>.json: which patterned model the last `make quant` made."""
    return f"quant_{tag}.json"
