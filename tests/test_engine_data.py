"""The engine's Data layer against stock pycaffe's on generated LMDB/LevelDB databases: same
batches in the same order (cycling past the end), same transformation (mean_file,
mean_value, scale, centre crop, encoded images decoded to BGR, float records); and, where
Caffe draws random numbers (TRAIN crops, mirror), outputs that are valid crops."""
import io

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
