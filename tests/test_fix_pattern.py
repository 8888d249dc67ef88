"""tools/fix_pattern.py against the authors' own fine-tune files: the same layers frozen, the
same solver changes."""
import pytest

from sepnets.caffe import files
from sepnets.patterns import finetune
from tests.support.project import NETS, REPO, run_tool

FIX = REPO / "tools" / "fix_pattern.py"


def params(net):
    """{layer: [(lr_mult, decay_mult), ...]} as Caffe reads them (unset fields: 1)."""
    return {layer.name: [(p.lr_mult, p.decay_mult) for p in layer.param] for layer in net.layer}


def frozen(net):
    return [layer.name for layer in net.layer if len(layer.param) and layer.param[0].lr_mult == 0
            and layer.type == "Convolution"]


def fix_authors(authors, out, net, solver, their_fix, *flags):
    """Runs fix_pattern.py on the authors' net and solver; (our net, their fix net)."""
    proc = run_tool(FIX, "--net", authors / net, "--solver", authors / solver, *flags,
                    "--out-dir", out)
    assert proc.returncode == 0, proc.stderr
    return (files.read_net(out / "train_val_fix_3x3_pattern.prototxt"),
            files.read_net(authors / their_fix))


def test_googlenet_3x3_is_the_authors_file(authors, tmp_path):
    """Their fix-3x3 net froze the nine inception 3x3 convolutions; conv2/3x3 (the stem's 3x3,
    not on the input) stayed trainable, hence --exclude '^conv2/'. Nothing else differs."""
    ours, theirs = fix_authors(authors, tmp_path, "googlenet_train_val.prototxt",
                               "googlenet_quick_solver.prototxt",
                               "googlenet_train_val_fix_3x3_pattern.prototxt",
                               "--filter", "3x3", "--exclude", "^conv2/")
    assert len(frozen(theirs)) == 9
    assert ours == theirs
    # biases keep their params: lr_mult 2, decay_mult 0
    assert params(ours)["inception_3a/3x3"] == [(0, 0), (2, 0)]

    solver = files.read_solver(tmp_path / "solver_fix_3x3_pattern.prototxt")
    their_solver = files.read_solver(authors / "googlenet_quick_solver_fix_3x3_pattern.prototxt")
    assert solver.base_lr == their_solver.base_lr == pytest.approx(0.005)
    assert solver.net == str((tmp_path / "train_val_fix_3x3_pattern.prototxt").resolve())
    assert solver.snapshot_prefix.endswith("/bvlc_googlenet_quick_fix_3x3_pattern")
    # everything else as in the training solver (the authors also changed the snapshot interval)
    original = files.read_solver(authors / "googlenet_quick_solver.prototxt")
    for field in ("net", "base_lr", "snapshot_prefix"):
        solver.ClearField(field)
        original.ClearField(field)
    assert solver == original


def test_googlenet_default_selection_also_freezes_the_stem_3x3(authors, tmp_path):
    proc = run_tool(FIX, "--net", authors / "googlenet_train_val.prototxt", "--filter", "3x3",
                    "--out-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    ours = frozen(files.read_net(tmp_path / "train_val_fix_3x3_pattern.prototxt"))
    theirs = frozen(files.read_net(authors / "googlenet_train_val_fix_3x3_pattern.prototxt"))
    assert ours == ["conv2/3x3"] + theirs
    assert not (tmp_path / "solver_fix_3x3_pattern.prototxt").exists()  # no --solver given


def test_resnet20_is_the_authors_fix_pattern_file(authors, tmp_path):
    """Their ResNet-20 fix file froze the 18 residual-branch 3x3 convolutions and left conv1
    (the first conv on the input: our default) and the two 3x3 stride-2 shortcut projections
    map32_1_conv_proj, map64_1_conv_proj trainable, hence --exclude '_proj$'."""
    ours, theirs = fix_authors(authors, tmp_path, "resnet20_relu_msra_cifar10.prototxt",
                               "resnet20_solver.prototxt",
                               "resnet20_relu_msra_cifar10_fix_pattern.prototxt",
                               "--filter", "3x3", "--exclude", "_proj$")
    assert len(frozen(theirs)) == 18 and "conv1" not in frozen(theirs)
    assert params(ours) == params(theirs)  # every layer's ParamSpecs, BatchNorm's included
    # the rest differs from their file only in the TRAIN data layer (they halved its batch)
    differ = [a.name for a, b in zip(ours.layer, theirs.layer) if a != b]
    assert differ == ["data"] and ours.layer[0].data_param.batch_size == 256
    solver = files.read_solver(tmp_path / "solver_fix_3x3_pattern.prototxt")
    assert solver.base_lr == pytest.approx(0.05)
    assert solver.net == str(tmp_path / "train_val_fix_3x3_pattern.prototxt")
    assert solver.snapshot_prefix == "model/ResNet20_highway_padded_data_fix_3x3_pattern"

    proc = run_tool(FIX, "--net", authors / "resnet20_relu_msra_cifar10.prototxt",
                    "--filter", "3x3", "--out-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    default = frozen(files.read_net(tmp_path / "train_val_fix_3x3_pattern.prototxt"))
    assert sorted(default) == sorted(frozen(theirs) + ["map32_1_conv_proj", "map64_1_conv_proj"])


def test_freeze_adds_a_weight_param_where_there_was_none():
    net = files.read_net(NETS / "tiny.prototxt")
    out = finetune.freeze(net, {"conv2", "conv3"})
    # only the weight's ParamSpec: a bias would keep Caffe's default (lr_mult 1, decay_mult 1)
    assert params(out)["conv2"] == [(0, 0)] and params(out)["conv3"] == [(0, 0)]
    assert params(out)["conv1"] == [] and params(net)["conv2"] == []  # the input is untouched


def test_outputs_beside_the_inputs_and_train_net_solvers(tmp_path):
    (tmp_path / "nets").mkdir()
    net = tmp_path / "nets" / "lenet.prototxt"
    net.write_text((NETS / "tiny_train.prototxt").read_text())
    solver = tmp_path / "s.prototxt"
    solver.write_text('train_net: "nets/lenet.prototxt"\ntest_net: "nets/lenet.prototxt"\n'
                      "base_lr: 0.01\n")
    proc = run_tool(FIX, "--net", "nets/lenet.prototxt", "--solver", "s.prototxt",
                    "--filter", "3x3", "--include-first", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "frozen 1 layer(s): conv1" in proc.stdout
    written = files.read_solver(tmp_path / "solver_fix_3x3_pattern.prototxt")
    assert written.train_net == "nets/train_val_fix_3x3_pattern.prototxt"
    assert written.test_net == ["nets/lenet.prototxt"] and written.base_lr == pytest.approx(0.005)
    assert written.snapshot_prefix == "fine_tune_fix_3x3_pattern"
    assert (tmp_path / "nets" / "train_val_fix_3x3_pattern.prototxt").is_file()


@pytest.mark.parametrize("args, message", [
    (["--filter", "3x3"], "no layer selected by --filter 3x3 (its convolutions: 1 x 3x3; conv1 "
                          "reads the network input and stays real-valued unless --include-first)"),
    (["--filter", "3x3", "--include-first", "--lr-scale", "0"], "--lr-scale 0: must be positive"),
    (["--filter", "9"], "unknown filter spec '9'"),
    (["--filter", "3x3", "--include-first", "--out-dir", "nowhere"], "--out-dir nowhere: no such directory"),
])
def test_errors(tmp_path, args, message):
    net = tmp_path / "net.prototxt"
    net.write_text((NETS / "tiny_train.prototxt").read_text())
    proc = run_tool(FIX, "--net", net, *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fix_pattern.py: error: ")
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.prototxt"]
