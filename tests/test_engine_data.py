"""The engine's data layers against stock pycaffe's: Data on generated LMDB/LevelDB databases
(same batches in the same order, cycling past the end; same transformation: mean_file,
mean_value, scale, centre crop, encoded images decoded to BGR, float records), ImageData on
generated PNG/JPEG lists, HDF5Data and HDF5Output on HDF5 files, MemoryData fed by
set_input_arrays; and, where Caffe draws random numbers (TRAIN crops, mirror, shuffle,
rand_skip), outputs with the properties Caffe's have."""
import io

import cv2
import h5py
import numpy as np
import pytest

from sepnets.caffe import files, glog
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine.net import Net, net_state
from tests.support.engine import Case, assert_conforms, run_cases

R = np.random.default_rng(5)
IMAGES = R.integers(0, 256, (10, 3, 10, 9), dtype=np.uint8)
LABELS = np.arange(10) % 4


def write_db(path, backend, encode=None, floats=False):
    with DatumWriter(path, backend) as out:
        for image, label in zip(IMAGES, LABELS):
            datum = caffe_pb2.Datum(channels=3, height=10, width=9, label=int(label))
            if encode:
                datum.data, datum.encoded = encode(image), True
            elif floats:
                datum.float_data.extend((image.astype(np.float32) / 7).reshape(-1))
            else:
                datum.data = image.tobytes()
            out.put(datum)
    return path


def png(image):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image[::-1].transpose(1, 2, 0)).save(buf, format="PNG")  # BGR -> RGB
    return buf.getvalue()


def data_net(name, source, backend, transform, phase_rule="", batch=4):
    return (f'name: "{name}"\nlayer {{ name: "data" type: "Data" top: "data" top: "label" '
            f'{phase_rule} transform_param {{ {transform} }} '
            f'data_param {{ source: "{source}" backend: {backend} batch_size: {batch} }} }}\n')


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dbs")
    mean = d / "mean.binaryproto"
    files.write_blobproto(mean, R.uniform(0, 255, (1, 3, 10, 9)).astype(np.float32), legacy=True)
    return {"lmdb": write_db(d / "lmdb", "lmdb"), "leveldb": write_db(d / "leveldb", "leveldb"),
            "png": write_db(d / "png", "lmdb", encode=png),
            "float": write_db(d / "float", "leveldb", floats=True), "mean": mean, "dir": d}


def test_data_layer_matches_stock_caffe(stock, dbs):
    cases = [
        Case("lmdb_mean_file_crop_scale",
             data_net("a", dbs["lmdb"], "LMDB",
                      f'crop_size: 7 mean_file: "{dbs["mean"]}" scale: 0.5'), "TEST", forwards=4),
        Case("leveldb_mean_values_train",
             data_net("b", dbs["leveldb"], "LEVELDB", "mean_value: 100 mean_value: 120 "
                      "mean_value: 90 scale: 0.00390625"), "TRAIN", forwards=3),
        Case("png_records_bgr_crop", data_net("c", dbs["png"], "LMDB", "crop_size: 5 "
                                               "mean_value: 128"), "TEST", forwards=3),
        Case("float_records", data_net("d", dbs["float"], "LEVELDB", "scale: 2", batch=3),
             "TEST", forwards=4),
    ]
    for c in cases:
        c.backward, c.random_weights = False, False
    assert_conforms(run_cases(cases, dbs["dir"], stock), cases, rtol=0, atol=0)


def test_train_crops_and_mirrors_are_random_windows_of_the_records(dbs):
    """TRAIN: every output is the record's window at some offset, mirrored or not; over a few
    batches both mirrorings and several offsets occur (Caffe's RNG differs from ours)."""
    text = data_net("t", dbs["lmdb"], "LMDB", "crop_size: 6 mirror: true", batch=10)
    path = dbs["dir"] / "train_crop.prototxt"
    path.write_text(text)
    glog.configure(min_level=2)
    net = Net(net_state(files.read_net(path), "TRAIN"), seed=3, source=str(path))
    seen_offsets, seen_mirror = set(), set()
    for _ in range(3):
        net.forward(grad=False)
        batch, labels = net.output("data"), net.output("label")
        assert (labels == LABELS).all()
        for image, out in zip(IMAGES.astype(np.float32), batch):
            matches = [(h, w, m) for h in range(5) for w in range(4) for m in (False, True)
                       if np.array_equal(out, (image[:, h:h + 6, w:w + 6][:, :, ::-1] if m
                                               else image[:, h:h + 6, w:w + 6]))]
            assert matches, "an output is no window of its record"
            seen_offsets.add(matches[0][:2])
            seen_mirror.add(matches[0][2])
    net.close()
    glog.configure(min_level=0)
    assert seen_mirror == {False, True} and len(seen_offsets) > 5


# ---------------------------------------------------------------- ImageData, HDF5, MemoryData
PICTURES = [R.integers(0, 256, shape, dtype=np.uint8)
            for shape in ((9, 11, 3), (8, 8, 3), (12, 10, 3), (9, 11, 3), (10, 9, 3))]


@pytest.fixture(scope="module")
def sources(dbs):
    """Images (PNG of several sizes, same-size JPEGs), their list files, HDF5 files and a
    grayscale mean file, in dbs' directory."""
    d = dbs["dir"] / "sources"
    (d / "images").mkdir(parents=True)
    names = []
    for i, picture in enumerate(PICTURES):
        names.append(f"p{i}.png")
        cv2.imwrite(str(d / "images" / names[-1]), picture)
        cv2.imwrite(str(d / "images" / f"j{i}.jpg"), cv2.resize(picture, (11, 9)))
    (d / "png.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    (d / "jpg.txt").write_text("".join(f"{d / 'images' / f'j{i}.jpg'} {i}\n"
                                       for i in range(len(PICTURES))))
    files.write_blobproto(d / "gray_mean.binaryproto",
                            R.uniform(0, 255, (1, 1, 9, 11)).astype(np.float32), legacy=True)
    rows = 0
    for name, count in (("a.h5", 4), ("b.h5", 3)):
        with h5py.File(d / name, "w") as f:
            f["data"] = R.standard_normal((count, 2, 3))  # float64: read as float, as Caffe does
            f["label"] = np.arange(rows, rows + count)
        rows += count
    (d / "h5.txt").write_text(f"{d / 'a.h5'}\n{d / 'b.h5'}\n")
    return d


def image_net(name, source, params, transform="", batch=2, phase_rule=""):
    return (f'name: "{name}"\nlayer {{ name: "data" type: "ImageData" top: "data" top: "label" '
            f'{phase_rule} transform_param {{ {transform} }} image_data_param {{ source: "{source}" '
            f'batch_size: {batch} {params} }} }}\n')


def hdf5_net(name, source, params="", batch=3):
    return (f'name: "{name}"\nlayer {{ name: "data" type: "HDF5Data" top: "data" top: "label" '
            f'hdf5_data_param {{ source: "{source}" batch_size: {batch} {params} }} }}\n')


def data_cases(f):
    memory = (R.standard_normal((6, 2, 3, 3)).astype(np.float32), np.arange(6, dtype=np.float32))
    memory_net = ('name: "m"\nlayer { name: "data" type: "MemoryData" top: "data" top: "label" '
                  'transform_param { scale: 2 } memory_data_param { batch_size: 2 channels: 2 '
                  'height: 3 width: 3 } }\n')
    output_net = ('name: "o"\nlayer { name: "in" type: "Input" top: "x" top: "l" input_param { '
                  'shape { dim: 3 dim: 2 dim: 2 } shape { dim: 3 } } }\n'
                  'layer { name: "out" type: "HDF5Output" bottom: "x" bottom: "l" '
                  'hdf5_output_param { file_name: "out.h5" } }\n')
    return [
        Case("image_data_resize_crop_mean_values",
             image_net("i", f / "png.txt", f'new_height: 7 new_width: 8 root_folder: "{f}/images/"',
                       "crop_size: 5 mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.5"),
             forwards=4),
        Case("image_data_gray_jpeg_mean_file",
             image_net("g", f / "jpg.txt", "is_color: false",
                       f'mean_file: "{f / "gray_mean.binaryproto"}"', batch=3), forwards=2),
        Case("hdf5_data_files_in_turn", hdf5_net("h", f / "h5.txt"), forwards=4),
        Case("memory_data_cycles_untransformed", memory_net, forwards=4, memory_data=memory),
        Case("hdf5_output", output_net, inputs={"x": R.standard_normal((3, 2, 2)).astype(np.float32),
                                                "l": np.arange(3, dtype=np.float32)}),
    ]


def test_image_hdf5_and_memory_data_match_stock_caffe(stock, sources):
    """ImageData (OpenCV decoding, resize, root_folder, grayscale, the transformations),
    HDF5Data (files in turn, rows cycling), MemoryData (set_input_arrays, batches cycling, not
    transformed) and HDF5Output (the file it writes) against stock Caffe."""
    cases = data_cases(sources)
    for c in cases:
        c.backward, c.random_weights = False, False
    assert_conforms(run_cases(cases, sources / "run", stock), cases, rtol=0, atol=0)
    written = [h5py.File(sources / "run" / side / "out.h5", "r") for side in ("ours", "stock")]
    for name in ("data", "label"):
        ours, theirs = (np.asarray(f[name]) for f in written)
        assert ours.dtype == theirs.dtype == np.float32
        assert ours.shape == theirs.shape and ours.ndim == 4 and np.array_equal(ours, theirs)


def test_shuffle_rand_skip_and_mirror_draw_as_stock_caffe_does(stock, sources):
    """Where Caffe draws random numbers (each engine its own): with shuffle each pass over
    the image list or the HDF5 rows is a permutation of them; rand_skip starts the first
    batch below it, in list order; mirror flips an image or leaves it. Checked on both
    engines' outputs."""
    cases = [Case("image_data_shuffle_mirror",
                  image_net("s", sources / "jpg.txt", "shuffle: true", "mirror: true", batch=5),
                  forwards=2),
             Case("image_data_rand_skip", image_net("k", sources / "jpg.txt", "rand_skip: 3", batch=5)),
             Case("hdf5_data_shuffle", hdf5_net("z", sources / "h5.txt", "shuffle: true", batch=7),
                  forwards=2)]
    for c in cases:
        c.backward, c.random_weights = False, False
    images = [cv2.imread(str(sources / "images" / f"j{i}.jpg")).transpose(2, 0, 1).astype(np.float32)
              for i in range(len(PICTURES))]
    rows = np.concatenate([h5py.File(sources / n, "r")["data"][...] for n in ("a.h5", "b.h5")])
    shuffled, skipped, hdf5 = run_cases(cases, sources / "random", stock)

    def batches(side, passes):
        return [(side[f"{k}|blob|label"].astype(int), side[f"{k}|blob|data"]) for k in range(passes)]

    for side in shuffled:
        for labels, batch in batches(side, 2):
            assert sorted(labels) == list(range(5))
            for label, image in zip(labels, batch):
                assert (np.array_equal(image, images[label])
                        or np.array_equal(image, images[label][:, :, ::-1]))
    for side in skipped:
        ((labels, batch),) = batches(side, 1)
        assert labels[0] < 3 and list(labels) == [(labels[0] + i) % 5 for i in range(5)]
        assert all(np.array_equal(image, images[label]) for label, image in zip(labels, batch))
    for side in hdf5:
        for labels, batch in batches(side, 2):
            assert sorted(labels) == list(range(7))  # both files' rows, each once
            assert np.array_equal(batch, rows[labels].astype(np.float32))
