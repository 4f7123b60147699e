"""Writes docs/api.md, the API reference, from tfprune's docstrings.

Every public name in `tfprune.__all__` (and the public names of its public
submodules) gets its signature and docstring. Run from the repository root:

    python tools/gen_api_docs.py            # rewrite docs/api.md
    python tools/gen_api_docs.py --check    # exit 1 if docs/api.md is stale
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import types

import tfprune

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "api.md")


def _signature(obj) -> str:
    try:
        target = obj.__init__ if inspect.isclass(obj) else obj
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return "(...)"
    params = [p for name, p in sig.parameters.items() if name != "self"]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "(no docstring)")


def _entry(qualname: str, obj) -> list[str]:
    kind = "class" if inspect.isclass(obj) else "function"
    lines = [f"### `{qualname}`", "", f"```python\n{kind} {qualname}{_signature(obj)}\n```", "", _doc(obj), ""]
    if inspect.isclass(obj):
        for name, member in sorted(vars(obj).items()):
            if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            if member.__doc__ and name not in ("get_config", "from_config", "call", "build"):
                summary = inspect.cleandoc(member.__doc__).split("\n\n")[0].replace("\n", " ")
                lines.append(f"- `{name}`: {summary}")
        lines.append("")
    return lines


def _module_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return [
        n
        for n in names
        if (inspect.isclass(getattr(module, n, None)) or inspect.isfunction(getattr(module, n, None)))
    ]


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python tools/gen_api_docs.py`; do not edit by hand.",
        "",
        "## `tfprune`",
        "",
    ]
    modules = []
    for name in tfprune.__all__:
        obj = getattr(tfprune, name)
        if isinstance(obj, types.ModuleType):
            modules.append((name, obj))
        else:
            lines += _entry(f"tfprune.{name}", obj)
    for name, module in modules:
        lines += [f"## `tfprune.{name}`", "", inspect.cleandoc(module.__doc__ or ""), ""]
        for member in _module_names(module):
            lines += _entry(f"tfprune.{name}.{member}", getattr(module, member))
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = open(OUT).read() if os.path.exists(OUT) else ""
        if current != text:
            print("docs/api.md is out of date: run `python tools/gen_api_docs.py`", file=sys.stderr)
            return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
