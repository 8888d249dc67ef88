"""prepare_imagenet against convert_imageset on generated images: the same records, byte for
byte (decoding, EXIF rotation, CMYK, OpenCV's bilinear resize, re-encoding, keys of skipped
lines);
stock Caffe's Data layer reads them back exactly; bad images are skipped and counted; an
interrupted run leaves nothing under the final name and a re-run works."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from sepnets.caffe import db, files
from tests.support.data import data_layer, forward
from tests.support.datagen import pattern_image
from tests.support.project import REPO, run_tool

TOOL = "tools/prepare_imagenet.py"


@pytest.fixture(scope="module")
def image_list(tmp_path_factory):
    """A root with images of many kinds and sizes, a list with a missing and a broken one."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    (root / "sub dir").mkdir()
    (root / "adir").mkdir()
    entries = []

    def save(name, image, **kwargs):
        image.save(root / name, **kwargs)
        entries.append(name)

    save("a.jpg", Image.fromarray(pattern_image(rng, 50, 37)), quality=90)
    save("b.JPEG", Image.fromarray(pattern_image(rng, 200, 300)), format="JPEG")
    save("sub dir/c d.jpg", Image.fromarray(pattern_image(rng, 48, 64)))
    save("gray.jpg", Image.fromarray(pattern_image(rng, 40, 30)[:, :, 0]))
    save("cmyk.jpg", Image.fromarray(pattern_image(rng, 20, 30)).convert("CMYK"), quality=95)
    rotated = Image.fromarray(pattern_image(rng, 30, 40))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("rot.jpg", rotated, exif=exif)
    save("rgba.png", Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)))
    save("pal.png", Image.fromarray(pattern_image(rng, 24, 24)).quantize(40))
    save("small.jpg", Image.fromarray(pattern_image(rng, 9, 17)))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    names = entries[:3] + ["missing.jpg"] + entries[3:6] + ["broken.jpg", "adir"] + entries[6:]
    listing = root / "list.txt"
    listing.write_text("".join(f"{name} {i % 7}\n" for i, name in enumerate(names)))
    return root, listing, names


def caffe_convert(stock, root, listing, out, *flags):
    stock.run_caffe_program("convert_imageset", [*flags, f"{root}/", listing, out], quiet=True)
    return dict(db.iter_records(out, "lmdb"))


def ours(root, listing, out, *flags):
    proc = run_tool(TOOL, "--root", root, "--list", listing, "--out", out, *flags)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("resize", [0, 7, 33, 256])
def test_records_are_byte_identical_to_convert_imagesets(stock, image_list, tmp_path, resize):
    root, listing, names = image_list
    proc = ours(root, listing, tmp_path / "ours", "--resize", str(resize), "-j", "2")
    theirs = caffe_convert(stock, root, listing, tmp_path / "theirs",
                           f"--resize_height={resize}", f"--resize_width={resize}")
    mine = dict(db.iter_records(tmp_path / "ours", "lmdb"))
    assert len(theirs) == len(names) - 3 and list(mine) == list(theirs)
    assert b"00000003_missing.jpg" not in mine  # the line number of a skipped image is left out
    assert mine == theirs
    assert "skipped 3 of 12 images" in proc.stderr
    for name in ("missing.jpg", "broken.jpg", "adir"):
        assert f"  {name}: " in proc.stderr
    assert "wrote 9 of 12 images" in proc.stderr


def test_encoded_records_match_convert_imageset(stock, image_list, tmp_path):
    root, listing, _ = image_list
    ours(root, listing, tmp_path / "ours", "--encoded")
    theirs = caffe_convert(stock, root, listing, tmp_path / "theirs", "--encoded")
    assert dict(db.iter_records(tmp_path / "ours", "lmdb")) == theirs  # the files' own bytes
    # resized: re-encoded by cv::imencode (JPEG quality 95, PNG), byte for byte as Caffe's
    ours(root, listing, tmp_path / "ours64", "--encoded", "--resize", "64")
    theirs = caffe_convert(stock, root, listing, tmp_path / "theirs64", "--encoded",
                           "--resize_height=64", "--resize_width=64")
    mine = dict(db.iter_records(tmp_path / "ours64", "lmdb"))
    assert list(mine) == list(theirs) and all(db.decode_datum(v).encoded for v in mine.values())
    assert mine == theirs


def test_stock_caffe_reads_pixels_minus_our_mean_lmdb_and_leveldb(stock, image_list, tmp_path):
    root, listing, _ = image_list
    common = ["--resize", "64", "--shuffle", "--seed", "3"]
    for backend in ("lmdb", "leveldb"):
        ours(root, listing, tmp_path / backend, "--backend", backend,
             "--mean", tmp_path / f"{backend}_mean.binaryproto", *common)
    ours(root, listing, tmp_path / "encoded", "--encoded", *common)
    stored = {}
    for name, backend in (("lmdb", "lmdb"), ("leveldb", "leveldb"), ("encoded", "lmdb")):
        values = [db.decode_datum(v) for _, v in db.iter_records(tmp_path / name, backend)]
        stored[name] = (np.stack([db.datum_array(d) for d in values]),
                        np.asarray([d.label for d in values]))
    images, labels = stored["lmdb"]
    assert np.array_equal(stored["leveldb"][0], images)
    mean = files.read_blobproto(tmp_path / "lmdb_mean.binaryproto")[0]
    got = forward(stock, tmp_path, [
        data_layer(tmp_path / "lmdb", "lmdb", 9, tmp_path / "lmdb_mean.binaryproto", crop=56),
        data_layer(tmp_path / "leveldb", "leveldb", 9, tmp_path / "leveldb_mean.binaryproto"),
        data_layer(tmp_path / "encoded", "lmdb", 9, tmp_path / "lmdb_mean.binaryproto")])
    want = images.astype(np.float32) - mean
    assert np.array_equal(got[0]["data"], want[:, :, 4:60, 4:60])
    assert np.array_equal(got[1]["data"], want)
    # encoded (re-encoded JPEG/PNG): Caffe decodes them to the pixels we decode
    assert np.array_equal(got[2]["data"], stored["encoded"][0].astype(np.float32) - mean)
    for out in got:
        assert np.array_equal(out["label"], labels)
    # the mean file: pycaffe loads it, it is numpy's mean and bit-identical to compute_image_mean's
    np.testing.assert_allclose(got[0]["mean"][0], images.mean(axis=0, dtype=np.float64), rtol=1e-6)
    stock.run_caffe_program("compute_image_mean", ["-backend", "leveldb", tmp_path / "leveldb",
                                                   tmp_path / "theirs.binaryproto"], quiet=True)
    assert np.array_equal(files.read_blobproto(tmp_path / "theirs.binaryproto"),
                          files.read_blobproto(tmp_path / "leveldb_mean.binaryproto"))
    # shuffled: a permutation of the list, fixed by the seed
    ours(root, listing, tmp_path / "plain", "--resize", "64")
    plain = [db.decode_datum(v).label for _, v in db.iter_records(tmp_path / "plain", "lmdb")]
    assert sorted(plain) == sorted(labels) and plain != list(labels)


def test_failure_mid_conversion_leaves_nothing_and_a_rerun_works(image_list, tmp_path):
    root, listing, _ = image_list
    out = tmp_path / "out" / "db"
    # a mean needs equal-sized images: without --resize the run fails at the second image
    proc = run_tool(TOOL, "--root", root, "--list", listing, "--out", out, "--mean", tmp_path / "m")
    assert proc.returncode == 2 and "use --resize" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not list(out.parent.iterdir()) and not (tmp_path / "m").exists()
    ours(root, listing, out, "--resize", "32", "--mean", tmp_path / "m")
    assert len(list(db.iter_records(out, "lmdb"))) == 9 and (tmp_path / "m").exists()
    proc = ours(root, listing, out, "--resize", "32", "--mean", tmp_path / "m")
    assert "up to date" in proc.stderr


def test_interrupted_run_leaves_nothing_and_a_rerun_works(image_list, tmp_path):
    root, _, _ = image_list
    long_list = tmp_path / "long.txt"
    long_list.write_text("b.JPEG 1\n" * 4000)
    out = tmp_path / "out" / "db"
    proc = subprocess.Popen([sys.executable, TOOL, "--root", root, "--list", long_list, "--out",
                             out, "--resize", "256", "-j", "2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.parent.is_dir() and any(out.parent.iterdir())):
        time.sleep(0.05)
    time.sleep(0.5)  # records are being written
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert not list(out.parent.iterdir())
    long_list.write_text("b.JPEG 1\n" * 3)
    ours(root, long_list, out, "--resize", "256")
    assert len(list(db.iter_records(out, "lmdb"))) == 3


def test_bad_lists_and_unreadable_images_are_one_line_errors(image_list, tmp_path):
    root, _, _ = image_list
    listing = tmp_path / "bad.txt"
    listing.write_text("a.jpg 1\nb.JPEG one\n")
    proc = run_tool(TOOL, "--root", root, "--list", listing, "--out", tmp_path / "o")
    assert proc.returncode == 2 and f"{listing}: line 2: expected 'PATH LABEL'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    listing.write_text("missing.jpg 1\nbroken.jpg 2\n")
    proc = run_tool(TOOL, "--root", root, "--list", listing, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "none of the 2 images could be read" in proc.stderr
    assert "skipped 2 of 2 images" in proc.stderr and not (tmp_path / "o").exists()
    proc = run_tool(TOOL, "--root", tmp_path / "nowhere", "--list", listing, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "--root is not a directory" in proc.stderr
