#!/usr/bin/env python3
"""test_layers.py -- the module rules docs/ARCHITECTURE.md states, checked
from the sources: no include cycle between modules in src/, only http.c
calls libmicrohttpd, http.c knows nothing of api.c, and every file opens
with a comment saying what it owns. TAP output."""
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(TOP, "src")
INCLUDE = re.compile(r'^\s*#\s*include\s+([<"])([^">]+)[">]', re.M)


def module(name):
    return os.path.splitext(os.path.basename(name))[0]


def sources():
    return sorted(f for f in os.listdir(SRC) if f.endswith((".c", ".h")))


def read(f):
    with open(os.path.join(SRC, f), encoding="utf-8") as fh:
        return fh.read()


def graph():
    """module -> the modules of src/ it includes (its .c and .h together)."""
    mods = {module(f) for f in sources()}
    g = {m: set() for m in mods}
    for f in sources():
        for kind, inc in INCLUDE.findall(read(f)):
            m = module(inc)
            if kind == '"' and m in mods and m != module(f):
                g[module(f)].add(m)
    return g


def find_cycle(g):
    """A list of modules forming a cycle, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                c = visit(n)
                if c:
                    return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state:
            c = visit(m)
            if c:
                return c
    return None


def test_no_cycle():
    c = find_cycle(graph())
    assert c is None, "include cycle: " + " -> ".join(c or [])


def test_only_http_calls_libmicrohttpd():
    users = [f for f in sources()
             if any(inc == "microhttpd.h" for _, inc in INCLUDE.findall(read(f)))]
    assert users == ["http.c"], "libmicrohttpd included by %s" % users


def test_http_knows_nothing_of_api():
    g = graph()
    assert "api" not in g["http"], "http includes api"
    assert "app" not in g["http"], "http includes app"


def test_every_file_says_what_it_owns():
    bad = [f for f in sources()
           if not re.match(r"/\* %s -- " % re.escape(f), read(f))]
    assert not bad, "no opening '/* name -- what it owns' comment: %s" % bad


def test_the_check_can_fail():
    """The cycle finder finds a cycle where there is one."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


TESTS = [test_no_cycle, test_only_http_calls_libmicrohttpd, test_http_knows_nothing_of_api,
         test_every_file_says_what_it_owns, test_the_check_can_fail]

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tap
    sys.exit(tap.run(TESTS))
