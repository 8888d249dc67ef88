"""`python -m sepnets.caffe train|test|time|device_query ...`: the caffe tool's command line
on the engine (Caffe semantics on PyTorch); see sepnets/engine/commands.py."""
import sys

from sepnets.engine.commands import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.argv[0] = "sepnets.caffe"  # error lines read `sepnets.caffe: error: ...`
    sys.exit(cli(main)(program="python -m sepnets.caffe"))
