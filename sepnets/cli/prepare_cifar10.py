"""prepare_cifar10.py: the SEP-Nets authors' CIFAR-10 variants as Caffe databases
(sepnets.datasets.cifar10)."""
import argparse
import sys
from pathlib import Path

from sepnets import names, paths
from sepnets.datasets import cifar10, download
from sepnets.errors import ArgumentParser


def main(argv=None):
    parser = ArgumentParser(prog="prepare_cifar10.py", description=cifar10.DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=cifar10.VARIANTS, default="highway-padded",
                        help="which preprocessing (default: highway-padded, the authors' best)")
    parser.add_argument("--backend", choices=("leveldb", "lmdb"), default="leveldb",
                        help="database type (default: leveldb, as the authors' prototxt)")
    parser.add_argument("--archive", type=Path,
                        help=f"a {cifar10.ARCHIVE_NAME} to use as it is (default: the official one, "
                             "see --download-dir)")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help=f"where the official {cifar10.ARCHIVE_NAME} is kept (default: data/cifar10)")
    parser.add_argument("--out", type=Path, help="output directory (default: data/cifar10/VARIANT)")
    parser.add_argument("--pad", type=int, default=cifar10.PAD,
                        help=f"zero pixels added on each side for highway-padded (default {cifar10.PAD})")
    parser.add_argument("--gcn-scale", type=float, default=cifar10.GCN_SCALE,
                        help=f"GCN scale (default {cifar10.GCN_SCALE:g})")
    parser.add_argument("--zca-bias", type=float, default=cifar10.ZCA_FILTER_BIAS,
                        help=f"ZCA filter_bias for nin (default {cifar10.ZCA_FILTER_BIAS:g})")
    parser.add_argument("--url", default=cifar10.URL, help="where to download the archive from")
    parser.add_argument("--force", action="store_true", help="rebuild outputs that exist")
    args = parser.parse_args(argv)
    download_dir = args.download_dir or paths.root() / names.CIFAR10_DIR
    archive = args.archive or (lambda: download.fetch(args.url, download_dir / cifar10.ARCHIVE_NAME,
                                                      cifar10.MD5))
    cifar10.prepare(archive, args.variant, args.backend,
                    args.out or paths.root() / names.cifar10_dir(args.variant),
                    pad=args.pad, scale=args.gcn_scale, filter_bias=args.zca_bias,
                    force=args.force, log=lambda msg: print(msg, file=sys.stderr))
    return 0
