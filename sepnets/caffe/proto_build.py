"""Obtains upstream BVLC caffe.proto from a pinned PyPI sdist and compiles it with grpcio-tools.

`brocolli-caffe` 3.0.0 ships src/caffe/proto/caffe.proto byte-identical to BVLC/caffe master
(commit 9b89154, the same messages and field numbers as Debian bullseye's Caffe 1.0.0 build).
Its later releases (4.0.0 .. 9.0.2) carry an SSD-extended caffe.proto whose field numbers
clash with BVLC's (e.g. SolverParameter 42 is `ap_version` there, `weights` upstream), so the
version is pinned and both the archive and the extracted file are checked by sha256.
The generated module is a build output (sepnets/caffe/_generated/, not committed).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_NAME = "brocolli-caffe"
SDIST_VERSION = "3.0.0"
SDIST_SHA256 = "ad7ba487552f4343df25044a9fa14812a96add48ea2ff993b53bf2dafe8248e2"
PROTO_MEMBER = f"brocolli-caffe-{SDIST_VERSION}/src/caffe/proto/caffe.proto"
PROTO_SHA256 = "ce91ef2dea9acc73d6bee6cd960604e47d2a3472339269b8709f0d2a2a0eda43"

PACKAGE_DIR = Path(__file__).resolve().parent
GENERATED_DIR = PACKAGE_DIR / "_generated"
STAMP = GENERATED_DIR / "SOURCE"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sepnets"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stamp_text() -> str:
    from google.protobuf import __version__ as pb_version
    return (f"{SDIST_NAME}=={SDIST_VERSION} caffe.proto sha256={PROTO_SHA256} "
            f"protobuf={pb_version} grpcio-tools={_grpc_tools_version()}\n")


def _grpc_tools_version() -> str:
    from importlib.metadata import version
    return version("grpcio-tools")


def _sdist_path() -> Path:
    """The pinned sdist from the package registry, cached and verified."""
    archive = CACHE_DIR / f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
    if archive.exists() and _sha256(archive.read_bytes()) == SDIST_SHA256:
        return archive
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--no-binary", ":all:", f"{SDIST_NAME}=={SDIST_VERSION}", "-d", tmp]
        print(f"setup: downloading {SDIST_NAME}=={SDIST_VERSION} (sdist with BVLC caffe.proto)")
        subprocess.run(cmd, check=True)
        got = Path(tmp) / archive.name
        digest = _sha256(got.read_bytes())
        if digest != SDIST_SHA256:
            sys.exit(f"setup: {got.name}: sha256 {digest} differs from the pinned {SDIST_SHA256}")
        os.replace(got, archive)
    return archive


def build(force: bool = False) -> Path:
    """Makes sepnets/caffe/_generated/caffe_pb2.py unless it is already built from the same inputs."""
    stamp = _stamp_text()
    if not force and STAMP.exists() and STAMP.read_text() == stamp \
            and (GENERATED_DIR / "caffe_pb2.py").exists():
        return GENERATED_DIR
    with tarfile.open(_sdist_path()) as tar:
        proto = tar.extractfile(PROTO_MEMBER).read()
    if _sha256(proto) != PROTO_SHA256:
        sys.exit(f"setup: {PROTO_MEMBER}: sha256 differs from the pinned BVLC caffe.proto")
    import grpc_tools
    from grpc_tools import protoc
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    tmp = Path(tempfile.mkdtemp(prefix="_generated.", dir=PACKAGE_DIR))
    try:
        (tmp / "caffe.proto").write_bytes(proto)
        rc = protoc.main(["protoc", f"-I{tmp}", f"-I{include}", f"--python_out={tmp}",
                          str(tmp / "caffe.proto")])
        if rc != 0:
            sys.exit("setup: protoc failed to compile caffe.proto")
        (tmp / "__init__.py").write_text('"""Generated from upstream caffe.proto by '
                                         'sepnets.caffe.proto_build; do not edit."""\n')
        (tmp / "SOURCE").write_text(stamp)
        old = PACKAGE_DIR / "_generated.old"
        shutil.rmtree(old, ignore_errors=True)
        if GENERATED_DIR.exists():
            os.replace(GENERATED_DIR, old)
        os.replace(tmp, GENERATED_DIR)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    where = GENERATED_DIR.relative_to(PACKAGE_DIR.parent.parent)
    print(f"setup: compiled upstream caffe.proto into {where}/caffe_pb2.py")
    return GENERATED_DIR


if __name__ == "__main__":
    build(force="--force" in sys.argv)
