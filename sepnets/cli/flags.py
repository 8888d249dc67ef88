"""Flags several commands share, declared once: the pattern selection (quant_pattern.py,
fix_pattern.py, the pipeline), the engine that runs Caffe's command line, and the checked
values (offsets, sweeps, device lists) argparse hands back."""
import re

from sepnets.caffe import engines
from sepnets.errors import UserError
from sepnets.patterns import quantize
from sepnets.patterns.selection import Selector, parse_filters

GPU_LIST = re.compile(r"^(all|\d+(,\d+)*)$")


def gpu_list(text):
    """--gpu: a device id, a list of them, or all (Caffe's -gpu)."""
    if not GPU_LIST.match(text):
        raise UserError(f"--gpu {text!r}: give a device id (0), a list (0,1) or all")
    return text


def offset(text):
    """--offset: a positive normal float32 (sepnets.patterns.quantize.check_offset)."""
    return quantize.parse_offset(text)


def sweep(text):
    """--sweep: START:STOP:STEP or A,B,C, checked before any work (quantize.parse_sweep)."""
    quantize.parse_sweep(text)
    return text


def add_selection(parser, required=True):
    """--filter, --include-first, --layers, --exclude (see sepnets.patterns.selection)."""
    parser.add_argument("--filter", nargs="+", required=required, metavar="HxW",
                        help="kernel sizes to binarize: 3x3, 5x5, 1x1, 7x7, 1x7, ... (several "
                             "allowed), or kxk for every kernel larger than 1x1")
    parser.add_argument("--include-first", action="store_true",
                        help="binarize the first convolution on the network input too "
                             "(left real-valued by default)")
    parser.add_argument("--layers", action="append", default=[], metavar="REGEX",
                        help="only layers whose name matches (re.search; repeatable: any of them)")
    parser.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                        help="leave layers whose name matches real-valued (repeatable)")


def selector(args):
    """The Selector the selection flags describe."""
    return Selector(parse_filters(args.filter), args.include_first, tuple(args.layers),
                    tuple(args.exclude))


def add_engine(parser, what="runs Caffe's commands"):
    """--engine caffe|torch and --gpu."""
    parser.add_argument("--engine", choices=engines.ENGINES, default="caffe",
                        help=f"what {what}: stock Caffe (default) or the PyTorch engine")
    parser.add_argument("--gpu", type=gpu_list,
                        help="passed to caffe as --gpu: a device id, a list (0,1) or all (a CUDA "
                             "build or the engine)")
