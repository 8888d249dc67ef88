"""The input pipeline of Data and ImageData: worker processes, the device-side transform and
staging give the same batches as decoding on the prefetch thread; rank-aware reading is
Caffe's Skip(); JPEG records decode (OpenCV) to stock Caffe's values.

- same seed -> the same TRAIN batches (random crops and mirrors, mean file) with 0, 1 and
  2 worker processes, with the transform done after the copy (the GPU's path) or in the
  workers, and with the database staged in memory (-stage_data); float and JPEG records;
  an ImageData list (shuffle, images of several sizes cropped to one) likewise, unstaged;
- database_batches (the demo's ONNX accuracy) gives the TEST layer's batches: every record
  once, the last batch short;
- the window indexing a GPU uses (torch, batched) is plain slicing;
- rank r of N reads stream records r, r+N, ... across the end of the database (Caffe's
  offset_ keeps counting), read or staged;
- a JPEG-encoded LMDB read by stock Caffe's Data layer and by the engine: identical.
"""
import numpy as np
import pytest
import torch

from sepnets.caffe import files, glog, images
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import data, records
from sepnets.engine.transform import windows
from sepnets.errors import UserError
from tests.support.datagen import pattern_image
from tests.support.engine import Case, assert_conforms, run_cases

R = np.random.default_rng(8)
COUNT = 13  # not a multiple of the batches: the stream wraps inside a batch


def write(path, datums):
    with DatumWriter(path, "lmdb") as out:
        for datum in datums:
            out.put(datum)
    return path


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    floats = R.normal(0, 1, (COUNT, 3, 10, 12)).astype(np.float32)
    jpegs = [images.encode(pattern_image(R, 20, 24), "jpg") for _ in range(COUNT)]
    mean = d / "mean.binaryproto"
    files.write_blobproto(mean, R.normal(0, 1, (1, 3, 10, 12)).astype(np.float32), legacy=True)
    return {
        "float": write(d / "float", [caffe_pb2.Datum(channels=3, height=10, width=12, label=i,
                                                     float_data=x.ravel().tolist())
                                     for i, x in enumerate(floats)]),
        "jpeg": write(d / "jpeg", [caffe_pb2.Datum(data=j, encoded=True, label=i)
                                   for i, j in enumerate(jpegs)]),
        "mean": mean, "floats": floats, "jpegs": jpegs, "dir": d}


def layer(source, batch, transform):
    param = caffe_pb2.LayerParameter(name="data", type="Data", top=["data", "label"])
    param.data_param.source, param.data_param.batch_size = str(source), batch
    param.data_param.backend = caffe_pb2.DataParameter.LMDB
    param.transform_param.MergeFrom(transform)
    return param


def read(param, count, train=True, workers=0, seed=7, stage=False, rank=0, size=1, **kwargs):
    """`count` batches of a Data layer (an ImageData layer: its list shuffled by a generator
    of (seed, 1), as the layer's) as numpy (data, labels)."""
    data.configure(workers=workers, stage=stage)
    glog.configure(min_level=2)
    try:
        if param.type == "ImageData":
            source = records.ImageListSource(param, np.random.default_rng((seed, 1)), train)
            batch = param.image_data_param.batch_size
        else:
            source, batch = records.DatumSource(param, rank, size), param.data_param.batch_size
        loader = data.BatchLoader(source, param, batch, train, np.random.default_rng(seed), "cpu",
                                  **kwargs)
        if stage:
            staged = data.StagedBatches(loader)
            loader.close()
            loader = staged
        try:
            return [tuple(t.numpy().copy() for t in loader.next()) for _ in range(count)]
        finally:
            loader.close()
    finally:
        data.configure()
        glog.configure(min_level=0)


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (x, lx), (y, ly) in zip(a, b):
        assert np.array_equal(x, y) and np.array_equal(lx, ly)


@pytest.mark.parametrize("kind", ["float", "jpeg"])
def test_same_seed_same_batches_whatever_the_workers_and_where_the_transform_runs(dbs, kind):
    if kind == "float":
        t = caffe_pb2.TransformationParameter(crop_size=7, mirror=True, mean_file=str(dbs["mean"]),
                                              scale=0.5)
    else:
        t = caffe_pb2.TransformationParameter(crop_size=16, mirror=True, mean_value=[104, 117, 123])
    param = layer(dbs[kind], 5, t)
    reference = read(param, 6)
    for workers in (1, 2):
        assert_same_batches(read(param, 6, workers=workers), reference)
    assert_same_batches(read(param, 6, workers=2, finish_in_workers=False), reference)
    assert_same_batches(read(param, 6, stage=True), reference)
    # the random choices vary: several crops, both mirrorings; another seed, other batches
    assert len({x.tobytes() for batch, _ in reference for x in batch}) > COUNT
    assert not np.array_equal(read(param, 1, seed=8)[0][0], reference[0][0])


@pytest.fixture(scope="module")
def image_list(dbs):
    """An ImageData layer's list of COUNT PNG and JPEG files of three sizes (labels 0..COUNT-1,
    in the list file list.txt): (directory, file of each label)."""
    d = dbs["dir"] / "images"
    d.mkdir()
    paths = {}
    for i in range(COUNT):
        encoding = "png" if i % 2 else "jpg"
        paths[i] = d / f"{i}.{encoding}"
        paths[i].write_bytes(images.encode(pattern_image(R, 12 + i % 3, 14 + 2 * (i % 3)), encoding))
    (d / "list.txt").write_text("".join(f"{path.name} {i}\n" for i, path in paths.items()))
    return d, paths


def test_image_data_runs_through_the_same_pipeline(image_list):
    """ImageData's records go through the Data layer's pipeline: the same batches with 0, 1
    and 2 workers and with the transform after the copy (records of different sizes cropped
    one by one there); each pass over the list is a permutation of it, every output a window
    of its image."""
    directory, paths = image_list
    param = caffe_pb2.LayerParameter(name="data", type="ImageData", top=["data", "label"])
    p = param.image_data_param
    p.source, p.root_folder = str(directory / "list.txt"), f"{directory}/"
    p.batch_size, p.shuffle = COUNT, True
    param.transform_param.MergeFrom(caffe_pb2.TransformationParameter(crop_size=10, mirror=True))
    reference = read(param, 2)
    for workers in (1, 2):
        assert_same_batches(read(param, 2, workers=workers), reference)
    assert_same_batches(read(param, 2, workers=2, finish_in_workers=False), reference)
    pictures = {i: images.decode(path).astype(np.float32) for i, path in paths.items()}
    for batch, labels in reference:
        assert sorted(labels.astype(int)) == list(range(COUNT))
        for out, label in zip(batch, labels.astype(int)):
            picture = pictures[label]
            height, width = picture.shape[:2]
            assert any(np.array_equal(out.transpose(1, 2, 0), window[:, ::-1] if m else window)
                       for h in range(height - 9) for w in range(width - 9)
                       for window in (picture[h:h + 10, w:w + 10],) for m in (False, True))
    assert [lab.tolist() for _, lab in reference] != [list(range(COUNT))] * 2  # shuffled


def test_database_batches_are_the_test_layers_batches(dbs):
    """Every record once, in key order, transformed as the TEST layer transforms them."""
    for kind, t in (("float", caffe_pb2.TransformationParameter(crop_size=7, scale=0.5,
                                                                mean_file=str(dbs["mean"]))),
                    ("jpeg", caffe_pb2.TransformationParameter(crop_size=16, mean_value=[104, 117, 123]))):
        ((want, want_labels),) = read(layer(dbs[kind], COUNT, t), 1, train=False)
        got = list(data.database_batches(layer(dbs[kind], COUNT, t), size=5))
        assert [len(labels) for _, labels in got] == [5, 5, 3]
        assert np.array_equal(np.concatenate([x for x, _ in got]), want)
        assert np.array_equal(np.concatenate([lab for _, lab in got]), want_labels)


def test_the_device_windows_are_the_records_windows():
    """The device's batched window indexing (torch) against plain slicing."""
    x = R.integers(0, 256, (6, 3, 9, 11), dtype=np.uint8)
    offsets = np.stack([R.integers(0, 4, 6), R.integers(0, 6, 6)], 1)
    mirror = np.array([True, False, True, True, False, False])
    want = np.stack([x[i, :, h:h + 6, w:w + 6][:, :, ::-1] if m else x[i, :, h:h + 6, w:w + 6]
                     for i, ((h, w), m) in enumerate(zip(offsets, mirror))])
    got = windows(torch.from_numpy(x), torch.from_numpy(offsets), torch.from_numpy(mirror), (6, 6))
    assert np.array_equal(got.numpy(), want)


def test_each_rank_reads_its_records_of_the_stream_read_or_staged(dbs):
    """Rank r's item j of batch b is stream record (b*B + j)*N + r: 13 records, so the
    stream wraps unevenly and each rank's records shift from one pass to the next."""
    batch, size = 4, 3
    param = layer(dbs["float"], batch, caffe_pb2.TransformationParameter())
    for rank in range(size):
        want = [(b * batch + j) * size + rank for b in range(3) for j in range(batch)]
        for stage in (False, True):
            got = read(param, 3, train=False, stage=stage, rank=rank, size=size)
            labels = np.concatenate([lab for _, lab in got]).astype(int)
            assert list(labels) == [i % COUNT for i in want], (rank, stage)
            assert np.array_equal(np.concatenate([x for x, _ in got]),
                                  dbs["floats"][np.asarray(want) % COUNT])


def test_worker_count_from_the_environment_and_bad_values(monkeypatch):
    monkeypatch.setenv(data.WORKERS_ENV, "3")
    assert data.worker_count() == 3
    monkeypatch.setenv(data.WORKERS_ENV, "many")
    with pytest.raises(UserError, match="SEPNETS_DATA_WORKERS=many"):
        data.worker_count()
    monkeypatch.delenv(data.WORKERS_ENV)
    assert data.worker_count() >= 1
    data.configure(workers=0)
    assert data.worker_count() == 0
    data.configure()


def test_jpeg_records_decode_to_stock_caffes_values(stock, dbs):
    net = (f'name: "j"\nlayer {{ name: "data" type: "Data" top: "data" top: "label" '
           f'transform_param {{ crop_size: 18 mean_value: 104 mean_value: 117 mean_value: 123 }} '
           f'data_param {{ source: "{dbs["jpeg"]}" backend: LMDB batch_size: 5 }} }}\n')
    cases = [Case("jpeg_records", net, "TEST", forwards=3)]
    for c in cases:
        c.backward, c.random_weights = False, False
    assert_conforms(run_cases(cases, dbs["dir"], stock), cases, rtol=0, atol=0)


def test_records_read_from_their_bytes_equal_protobufs_reading():
    """db.record_image's numpy reading of unencoded Datums against the protobuf runtime:
    uint8, unpacked and packed floats, negative labels, fields in another order; encoded
    images and malformed records go through protobuf (and its errors)."""
    from sepnets.caffe import db, wire
    floats = R.normal(0, 1, (2, 3, 4)).astype(np.float32)
    pixels = R.integers(0, 256, (3, 5, 2), dtype=np.uint8)
    datums = [caffe_pb2.Datum(channels=2, height=3, width=4, label=-7,
                              float_data=floats.ravel().tolist()),
              caffe_pb2.Datum(channels=3, height=5, width=2, label=2**31 - 1, data=pixels.tobytes()),
              caffe_pb2.Datum(channels=2, height=3, width=4, label=3,
                              float_data=floats.ravel().tolist(), encoded=False)]
    values = [d.SerializeToString() for d in datums]
    packed = b"".join(wire.length_field(6, floats.tobytes()))
    values.append(b"\x28\x05" + packed + b"\x08\x02\x10\x03\x18\x04")  # label, packed, shape
    wants = [(floats, -7), (pixels, 2**31 - 1), (floats, 3), (floats, 5)]
    for value, (want, label) in zip(values, wants):
        image, got_label = db.record_image(value)
        assert np.array_equal(image.transpose(2, 0, 1), want) and got_label == label
        datum = db.decode_datum(value)
        assert np.array_equal(db.datum_array(datum), want) and datum.label == label
    encoded = caffe_pb2.Datum(data=images.encode(pattern_image(R, 6, 7), "png"), encoded=True, label=1)
    image, label = db.record_image(encoded.SerializeToString())
    assert image.shape == (6, 7, 3) and label == 1
    short = caffe_pb2.Datum(channels=2, height=3, width=4, float_data=[1.0]).SerializeToString()
    with pytest.raises(UserError, match="record holds 1 values"):
        db.record_image(short)
