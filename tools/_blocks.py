"""Generated blocks in hand-written pages: one place that finds and
replaces them, for every renderer in `tools/`.

A block starts with its start marker line and ends with its end marker
line (HTML comments, e.g. `<!-- structured:start -->`); everything between
the markers in the page is replaced by the rendering.
"""

from __future__ import annotations

import argparse
import json
import os


def replace_block(page: str, block: str) -> str:
    """`page` with the block whose markers open and close `block` replaced."""
    start_marker = block.split("\n", 1)[0]
    end_marker = block.rsplit("\n", 1)[1]
    start, end = page.index(start_marker), page.index(end_marker) + len(end_marker)
    return page[:start] + block + page[end:]


def update_page(path: str, blocks, check: bool) -> int:
    """Writes `blocks` into the page at `path`; with `check`, writes nothing
    and returns 1 if the page is stale (0 if current)."""
    with open(path) as f:
        page = f.read()
    new = page
    for block in blocks:
        new = replace_block(new, block)
    if check:
        if new != page:
            print(f"{path} is stale: run the renderer without --check")
            return 1
        return 0
    with open(path, "w") as f:
        f.write(new)
    return 0


def saved_block(path: str, render) -> str | None:
    """`render` of the JSON saved at `path`, or None where there is none."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return render(json.load(f))


def render_pages(argv, description: str, path: str, render, pages) -> int:
    """The command line of a renderer whose one block, `render` of the JSON
    at `path`, stands in every page of `pages`: writes them, or with
    `--check` returns 1 if one is stale."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    args = parser.parse_args(argv)
    with open(path) as f:
        block = render(json.load(f))
    return max(update_page(page, [block], args.check) for page in pages)
