"""prepare_imagenet.py: an image list (PATH LABEL lines) as a Caffe database, as Caffe's
convert_imageset does (sepnets.datasets.imagenet)."""
import argparse
import os
import sys
from pathlib import Path

from sepnets import names, paths
from sepnets.datasets import imagenet
from sepnets.errors import ArgumentParser


def main(argv=None):
    parser = ArgumentParser(prog="prepare_imagenet.py", description=imagenet.DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="directory the list's paths are in")
    parser.add_argument("--list", required=True, type=Path, dest="list_path",
                        help="list file, lines 'PATH LABEL'")
    parser.add_argument("--out", type=Path,
                        help="database to create (default: data/imagenet/ilsvrc12_LISTSTEM_BACKEND)")
    parser.add_argument("--backend", choices=("lmdb", "leveldb"), default="lmdb")
    parser.add_argument("--resize", type=int, default=0,
                        help="resize every image to N x N (create_imagenet.sh: 256; default 0: keep)")
    parser.add_argument("--encoded", action="store_true", help="store encoded images")
    parser.add_argument("--encode-type", default="",
                        help="jpg, png or bmp (default with --encoded: the file's own type)")
    parser.add_argument("--shuffle", action="store_true", help="shuffle the list (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--mean", type=Path, help="also write the mean as this .binaryproto")
    parser.add_argument("--force", action="store_true", help="rebuild outputs that exist")
    args = parser.parse_args(argv)
    out = args.out or paths.root() / names.imagenet_db(args.list_path.stem, args.backend)
    imagenet.convert(args.root, args.list_path, out, args.backend, args.resize, args.encoded,
                     args.encode_type, args.shuffle, args.seed, args.jobs, args.mean, args.force,
                     log=lambda msg: print(msg, file=sys.stderr))
    return 0
