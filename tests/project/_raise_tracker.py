"""A pytest plugin that records which tfprune raise sites each test reaches.

Load it with `-p tests.project._raise_tracker` and name the output file in
`TFPRUNE_RAISE_SITES`. For every test function it records the `(file, line)`
of each `ValueError` or `TypeError` raised in a tfprune frame, whether the
test or tfprune itself catches it. It traces only calls into tfprune
(`sys.settrace`, exception events only), so it slows the tests down a little;
`test_raise_sites.py` uses it to check its registry.
"""

import json
import os
import sys
import threading

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PACKAGE = os.path.join(_ROOT, "tfprune")
_PREFIX = _PACKAGE + os.sep
_hits: dict = {}
_current = []


def _local(frame, event, arg):
    if event == "exception" and _current:
        error, traceback = arg[1], arg[2]
        # The frame that raised is the innermost entry of the traceback.
        if isinstance(error, (ValueError, TypeError)) and traceback.tb_next is None:
            path = os.path.relpath(frame.f_code.co_filename, _ROOT)
            _hits.setdefault(_current[-1], set()).add((path.replace(os.sep, "/"), frame.f_lineno))
    return _local


def _global(frame, event, arg):
    if frame.f_code.co_filename.startswith(_PREFIX):
        frame.f_trace_lines = False
        return _local
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    _current.append(item.nodeid.split("[")[0])
    sys.settrace(_global)
    threading.settrace(_global)
    try:
        return (yield)
    finally:
        sys.settrace(None)
        threading.settrace(None)
        _current.pop()


def pytest_sessionfinish(session):
    out = os.environ.get("TFPRUNE_RAISE_SITES")
    if out:
        with open(out, "w") as f:
            json.dump({test: sorted(hits) for test, hits in _hits.items()}, f, indent=1)
