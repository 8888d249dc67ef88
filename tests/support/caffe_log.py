"""Reads the numbers out of a Caffe training log (stock Caffe's or the engine's): the same
regular expressions work for both, which is what the engine's log format promises."""
import re
from collections import defaultdict

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf)"
LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] (.*)$")
ITERATION = re.compile(r"^Iteration (\d+) \(.*\), loss = " + NUMBER + "$")
FINAL = re.compile(r"^Iteration (\d+), loss = " + NUMBER + "$")  # after the last update
LR = re.compile(r"^Iteration (\d+), lr = " + NUMBER + "$")
TESTING = re.compile(r"^Iteration (\d+), Testing net \(#(\d+)\)$")
OUTPUT = re.compile(r"^    (Train|Test) net output #(\d+): (\S+) = " + NUMBER + r"(?: \(\* .*\))?$")


def parse(text):
    """{'loss': {iter: smoothed loss}, 'lr': {iter: lr}, 'train': {iter: {name: value}},
    'test': {iter: {name: value}}, 'messages': [message text of every glog line]}."""
    out = {"loss": {}, "lr": {}, "train": defaultdict(dict), "test": defaultdict(dict),
           "messages": []}
    iteration = test_iteration = None
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        message = m.group(1)
        out["messages"].append(message)
        if (m := ITERATION.match(message)):
            iteration = int(m.group(1))
            out["loss"][iteration] = float(m.group(2))
        elif (m := FINAL.match(message)):
            out["loss"][int(m.group(1))] = float(m.group(2))
        elif (m := LR.match(message)):
            out["lr"][int(m.group(1))] = float(m.group(2))
        elif (m := TESTING.match(message)):
            test_iteration = int(m.group(1))
        elif (m := OUTPUT.match(message)):
            kind, _, name, value = m.groups()
            if kind == "Train":
                out["train"][iteration][name] = float(value)
            else:
                out["test"][test_iteration][name] = float(value)
    return out
