"""make_nets.py: writes prototxt/<net>/{train_val,deploy,solver}.prototxt for every network
of sepnets.nets.zoo (sepnets.nets.generate), or the README's table of networks."""
from pathlib import Path

from sepnets import paths
from sepnets.errors import ArgumentParser, UserError
from sepnets.nets import generate
from sepnets.nets.zoo import BY_NAME, NETWORKS


def main(argv=None):
    parser = ArgumentParser(
        prog="make_nets.py",
        description="Writes prototxt/<net>/{train_val,deploy,solver}.prototxt for every network "
                    "of the paper and its baselines, or their table (parameters, sizes, MACs).")
    parser.add_argument("names", nargs="*", metavar="NET",
                        help="networks to write (default: all): " + ", ".join(BY_NAME))
    parser.add_argument("--out", default=None,
                        help="output folder (default: prototxt/ in the working root)")
    parser.add_argument("--table", action="store_true",
                        help="print the table of networks (Markdown) instead of writing files")
    parser.add_argument("--readme", metavar="README.md",
                        help="replace the table of networks in this file instead of writing files")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BY_NAME]
    if unknown:
        raise UserError(f"unknown network {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    networks = [BY_NAME[name] for name in args.names] or NETWORKS
    if args.table:
        print(generate.table(networks), end="")
    elif args.readme:
        generate.update_readme(args.readme)
        print(f"{args.readme}: networks table updated")
    else:
        for path in generate.write_all(args.out or paths.root() / "prototxt", networks):
            print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    return 0
