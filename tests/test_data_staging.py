"""Conversions write their databases through DatumWriter and StagedOutputs: a failure or an
interrupt at any point leaves nothing under the final names, and the next run starts clean."""
import numpy as np
import pytest

from sepnets.caffe import db
from sepnets.datasets import staging
from sepnets.errors import UserError


def datums(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise KeyboardInterrupt
        yield db.array_datum(np.full((1, 2, 2), i % 256, np.uint8), i % 10)


@pytest.mark.parametrize("backend", ["lmdb", "leveldb"])
def test_interrupt_mid_write_leaves_no_database_and_a_rerun_works(tmp_path, backend):
    outs = [tmp_path / "train_db", tmp_path / "mean.binaryproto"]
    with pytest.raises(KeyboardInterrupt):
        with staging.StagedOutputs(outs) as stage:
            db.write_records(stage.path(outs[0]), backend, datums(2500, fail_at=1500), total=2500)
    assert list(tmp_path.iterdir()) == []
    # a crash (no cleanup at all) leaves a staged directory: the next run removes it first
    (tmp_path / ".train_db.staged").mkdir()
    (tmp_path / ".train_db.staged" / "junk").write_text("x")
    with staging.StagedOutputs(outs) as stage:
        assert db.write_records(stage.path(outs[0]), backend, datums(2500), total=2500) == 2500
        db.write_mean(stage.path(outs[1]), np.zeros((1, 2, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mean.binaryproto", "train_db"]
    keys = [k for k, _ in db.iter_records(outs[0], backend)]
    assert keys[0] == b"00000000" and keys[-1] == b"00002499" and len(keys) == 2500


def test_keys_follow_the_given_index_and_suffix(tmp_path):
    with db.DatumWriter(tmp_path / "d", "lmdb") as writer:
        writer.put(db.array_datum(np.zeros((1, 1, 1), np.uint8), 0), suffix="a.jpg", index=0)
        writer.put(db.array_datum(np.zeros((1, 1, 1), np.uint8), 0), suffix="c d.jpg", index=2)
    assert [k for k, _ in db.iter_records(tmp_path / "d", "lmdb")] == [b"00000000_a.jpg",
                                                                       b"00000002_c d.jpg"]


def test_existing_outputs_are_kept_unless_forced(tmp_path):
    a, b, mean = tmp_path / "a", tmp_path / "b", tmp_path / "mean"
    assert not staging.up_to_date([a, b])
    a.mkdir()
    with pytest.raises(UserError, match="already exist"):
        staging.up_to_date([a, b])
    assert not staging.up_to_date([a, b], force=True)
    mean.write_text("old")
    assert not staging.up_to_date([b, mean], derived=[mean])
    b.mkdir()
    assert staging.up_to_date([a, b, mean])
    with staging.StagedOutputs([a, mean]) as stage:
        stage.path(a).mkdir()
        stage.path(mean).write_text("new")
    assert mean.read_text() == "new" and a.is_dir()


def test_an_output_never_replaces_an_input(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    listing = tmp_path / "list.txt"
    listing.write_text("x 1\n")
    for output in (images, listing, tmp_path):
        with pytest.raises(UserError, match="refusing to replace an input"):
            staging.up_to_date([output], force=True, inputs=[images / "sub", listing])
    assert listing.read_text() == "x 1\n" and (images / "sub").is_dir()
    assert not staging.up_to_date([tmp_path / "db"], force=True, inputs=[images, listing])
