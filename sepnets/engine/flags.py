"""gflags-style command lines, as the caffe binary parses them: `-name value`, `--name value`,
`-name=value` and `--name=value` all work, flags may come before or after the command, and
an unknown flag or a bad value stops with gflags' message."""
from dataclasses import dataclass

from sepnets.errors import UserError


@dataclass
class Flag:
    name: str
    kind: type
    default: object
    help: str


class FlagError(UserError):
    pass


def parse(argv, flags):
    """(values by flag name, positional arguments) for `argv` (without the program name)."""
    by_name = {f.name: f for f in flags}
    values = {f.name: f.default for f in flags}
    positional = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None and flag_is_bool_negation(name, by_name):
            values[name[2:]] = False
            continue
        if flag is None:
            raise FlagError(f"unknown command line flag '{name}'")
        if flag.kind is bool and not has_value:
            values[name] = True
            continue
        if not has_value:
            if i >= len(argv):
                raise FlagError(f"flag '{arg}' is missing its argument")
            value = argv[i]
            i += 1
        values[name] = convert(flag, value)
    return values, positional


def flag_is_bool_negation(name, by_name):
    return name.startswith("no") and name[2:] in by_name and by_name[name[2:]].kind is bool


def convert(flag, value):
    if flag.kind is bool:
        if value.lower() in ("true", "t", "yes", "y", "1"):
            return True
        if value.lower() in ("false", "f", "no", "n", "0"):
            return False
    elif flag.kind is int:
        try:
            return int(value)
        except ValueError:
            pass
    else:
        return value
    raise FlagError(f"illegal value '{value}' specified for "
                    f"{'bool' if flag.kind is bool else 'int32'} flag '{flag.name}'")


def unparse(command, values, flags, **overrides):
    """A command line giving `values` (the flags that differ from their defaults) again."""
    values = dict(values, **overrides)
    return [command] + [f"-{f.name}={str(values[f.name]).lower() if f.kind is bool else values[f.name]}"
                        for f in flags if values[f.name] != f.default]


def usage(program, message, flags):
    lines = [f"{program}: {message}", "", "  Flags:"]
    for f in flags:
        default = f'"{f.default}"' if f.kind is str else str(f.default).lower()
        lines.append(f"    -{f.name} ({f.help}) type: {f.kind.__name__} default: {default}")
    return "\n".join(lines)
