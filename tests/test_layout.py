"""The package's layout holds: imports go one way between the parts (each part's __init__ says
which it may import), Caffe's files and rules need no torch, command lines stay in cli/, and
sepnets/ keeps only a few top-level modules."""
import ast

from tests.support.project import REPO

PACKAGE = REPO / "sepnets"
TOP_LEVEL = {"__init__", "bootstrap", "errors", "names", "paths"}
# part -> the parts its modules may import (besides the top-level modules and itself)
ALLOWED = {
    "caffe": {"engine"},                 # only __main__, which hands over to the engine
    "engine": {"caffe"},
    "nets": {"caffe"},
    "datasets": {"caffe"},
    "trainlog": {"caffe"},
    "patterns": {"caffe", "nets"},
    "deploy": {"caffe", "nets", "patterns"},
    "procedure": {"caffe", "engine", "nets", "datasets", "trainlog", "patterns", "deploy"},
    "cli": {"caffe", "engine", "nets", "datasets", "trainlog", "patterns", "deploy", "procedure"},
}


def imported(path):
    """The sepnets modules a file imports, as dotted names."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sepnets":
                found |= {f"sepnets.{alias.name}" for alias in node.names}
            elif node.module.startswith("sepnets."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sepnets.")}
    return found


def modules():
    return [p for p in PACKAGE.rglob("*.py") if "_generated" not in p.parts]


def test_parts_import_one_way():
    wrong = []
    for path in modules():
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:                     # top-level: standard library and each other
            allowed = set()
            part = None
        else:
            part = rel.parts[0]
            assert part in ALLOWED, f"sepnets/{part}/ is not a known part (add it to ALLOWED)"
            allowed = ALLOWED[part]
            if part == "caffe" and rel.name != "__main__.py":
                allowed = set()
        for name in imported(path):
            target = name.split(".")[1]
            if target in TOP_LEVEL or target == part:
                continue
            if target not in allowed:
                wrong.append(f"{rel} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_caffe_files_and_rules_need_no_torch():
    for path in (PACKAGE / "caffe").glob("*.py"):
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n == "torch" or n.startswith("torch.") for n in names), path


def test_few_top_level_modules_and_every_part_says_what_it_holds():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL and len(top) <= 6
    for part in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((part / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"{part.name}/__init__.py needs a docstring"


def test_argparse_only_in_command_lines():
    for path in modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli" or rel.parts[:2] == ("engine", "flags.py") \
                or rel.name == "errors.py":
            continue  # engine/flags.py: the caffe tool's gflags-style flags; errors: the parser class
        text = path.read_text()
        assert "ArgumentParser(" not in text and "add_argument(" not in text, rel
