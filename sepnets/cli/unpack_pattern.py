"""unpack_pattern.py: a packed pattern model (quant_pattern.py --pack) back to a standard
.caffemodel (sepnets.patterns.pack)."""
from sepnets.errors import ArgumentParser
from sepnets.patterns import pack


def main(argv=None):
    parser = ArgumentParser(prog="unpack_pattern.py",
                            description="Packed pattern model (quant_pattern.py --pack) -> .caffemodel")
    parser.add_argument("packed", help="the packed file")
    parser.add_argument("output", help="the .caffemodel to write")
    args = parser.parse_args(argv)
    model = pack.unpack(args.packed, args.output)
    print(f"wrote {args.output}: {sum(len(b) for b in model.blobs.values())} blobs of "
          f"{len(model.blobs)} layers")
    return 0
