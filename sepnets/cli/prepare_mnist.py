"""prepare_mnist.py: MNIST as Caffe databases (sepnets.datasets.mnist)."""
import argparse
import sys
from pathlib import Path

from sepnets import names, paths
from sepnets.datasets import mnist
from sepnets.errors import ArgumentParser


def main(argv=None):
    parser = ArgumentParser(prog="prepare_mnist.py", description=mnist.DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=None,
                        help=f"where the databases go (default: {names.MNIST_DIR})")
    parser.add_argument("--backend", choices=("lmdb", "leveldb"), default="lmdb",
                        help="database type (default: lmdb)")
    parser.add_argument("--idx-dir", type=Path, help="directory with the official idx files")
    parser.add_argument("--test-count", type=int, default=mnist.TEST_COUNT,
                        help="test images taken from the 5,000-image sample (default "
                             f"{mnist.TEST_COUNT})")
    parser.add_argument("--seed", type=int, default=mnist.SEED,
                        help=f"split seed (default {mnist.SEED})")
    parser.add_argument("--force", action="store_true", help="rebuild outputs that exist")
    args = parser.parse_args(argv)
    mnist.prepare(args.out_dir or paths.root() / names.MNIST_DIR, args.backend, args.idx_dir,
                  args.test_count, args.seed, args.force,
                  log=lambda msg: print(msg, file=sys.stderr))
    return 0
