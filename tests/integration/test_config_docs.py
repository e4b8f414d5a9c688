#!/usr/bin/env python3
"""Keeps the configuration docs true to the binary. src/config.c's
config_options[] table is the one source of every setting and default;
`ssegate --help` prints that table, so its output is the truth here.
env.example, the table under "## Configuration" in README.md and the
manual page man/ssegate.8 must list exactly the same variables with the
same defaults (and the manual the same flags and ranges), and name no
setting the table lacks; the manual must also render without a warning
and name every signal and exit status. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_config_docs.py
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(TOP, "ssegate")

# How --help spells the two defaults that are not literal values: an
# empty string, and SERVER_ID's, which is computed (gethostname()).
NONE = "none"
HOST_NAME = "host name"

# An UPPER_SNAKE word with at least one underscore: what a setting's
# name looks like in prose ("PORT" alone is too common a word).
SETTING_WORD = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def read(rel):
    with open(os.path.join(TOP, rel), encoding="utf-8") as f:
        return f.read()


def help_options():
    """{VAR: {"flag", "range", "default"}} in --help order, from lines
    like "  --port=N  PORT  HTTP port (1..65535, default 3000)"."""
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, "ssegate --help exits %d: %s" % (r.returncode, r.stderr)
    opts = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^  (--[a-z0-9-]+)=[A-Z]+\s+([A-Z][A-Z0-9_]*)\s+(.*)$", line)
        if m is None:
            continue
        flag, var, rest = m.groups()
        d = re.search(r"\((?:(\d+\.\.\d+), )?default ([^()]*)\)$", rest)
        assert d is not None, "no '(default ...)' at the end of: %r" % line
        assert var not in opts, "%s listed twice" % var
        opts[var] = {"flag": flag, "range": d.group(1), "default": d.group(2)}
    return opts


def env_example():
    """{VAR: (value, comment)}: each assignment, with the comment lines
    directly above it (none when it follows another assignment)."""
    out, comment = {}, []
    for line in read("env.example").splitlines():
        line = line.strip()
        if not line:
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("# "))
        else:
            var, eq, value = line.partition("=")
            assert eq, "env.example: not VAR=value: %r" % line
            assert var not in out, "env.example sets %s twice" % var
            out[var] = (value, " ".join(comment))
            comment = []
    return out


def readme_section():
    text = read("README.md")
    m = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m is not None, "README.md has no '## Configuration' section"
    return m.group(1)


def readme_table():
    """{VAR: default} from the markdown table: | `VAR` | default | meaning |."""
    rows = {}
    lines = [l for l in readme_section().splitlines() if l.startswith("|")]
    assert len(lines) > 2, "no table under '## Configuration'"
    assert [c.strip() for c in lines[0].strip("|").split("|")][:2] == ["variable", "default"], \
        "table header: %r" % lines[0]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        assert m is not None, "one `VARIABLE` per row: %r" % line
        assert m.group(1) not in rows, "README lists %s twice" % m.group(1)
        rows[m.group(1)] = cells[1].strip("`")
    return rows


def same_names(where, have, want):
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    assert not missing, "%s lacks %s" % (where, missing)
    assert not extra, "%s has %s, which ssegate --help does not list" % (where, extra)


def test_help_lists_the_table():
    opts = help_options()
    assert len(opts) >= 10, "only %d options parsed from --help" % len(opts)
    for var, o in opts.items():
        assert o["flag"] == "--" + var.lower().replace("_", "-"), (var, o["flag"])
    assert opts["SERVER_ID"]["default"] == HOST_NAME, opts["SERVER_ID"]
    for var in ("STREAM_HANDOFF", "PUBLISH_PIPELINE"):
        assert var not in opts, "%s was removed" % var


def test_env_example_names():
    same_names("env.example", env_example(), help_options())


def test_env_example_defaults():
    ex = env_example()
    bad = []
    for var, o in help_options().items():
        if var not in ex:
            continue        # test_env_example_names reports it
        value, comment = ex[var]
        if o["default"] == HOST_NAME:
            # Computed at start-up: env.example leaves it empty (unset)
            # and its comment must say what that means.
            if value != "" or HOST_NAME not in comment:
                bad.append("%s=%r (want empty, with a comment naming the %s)"
                           % (var, value, HOST_NAME))
        elif value != ("" if o["default"] == NONE else o["default"]):
            bad.append("%s=%r (default %s)" % (var, value, o["default"]))
    assert not bad, "env.example differs from --help: %s" % "; ".join(bad)


def test_env_example_ranges():
    ex = env_example()
    bad = []
    for var, o in help_options().items():
        for r in re.findall(r"\d+\.\.\d+", ex.get(var, ("", ""))[1]):
            if r != o["range"]:
                bad.append("%s: %s in the comment, %s in --help" % (var, r, o["range"]))
    assert not bad, "; ".join(bad)


def test_env_example_names_no_other_setting():
    opts = help_options()
    words = set(SETTING_WORD.findall(read("env.example")))
    unknown = sorted(words - set(opts))
    assert not unknown, "env.example mentions settings ssegate lacks: %s" % unknown


def test_readme_names():
    same_names("README.md's configuration table", readme_table(), help_options())


def test_readme_defaults():
    rows = readme_table()
    bad = ["%s: %r (default %s)" % (var, rows[var], o["default"])
           for var, o in help_options().items()
           if var in rows and rows[var] != o["default"]]
    assert not bad, "README.md's table differs from --help: %s" % "; ".join(bad)


def test_readme_names_no_other_setting():
    opts = help_options()
    words = set(SETTING_WORD.findall(readme_section()))
    unknown = sorted(words - set(opts))
    assert not unknown, "README's Configuration section mentions settings ssegate lacks: %s" % unknown


# --------------------------------------------------------------- ssegate(8)

def man_source():
    return read("man/ssegate.8")


def roff_text(s):
    """Roff escapes as the reader sees them: fonts dropped, \\- a minus."""
    s = re.sub(r"\\f[BIRP]", "", s)
    return s.replace("\\-", "-").replace("\\e", "\\").replace("\\(en", "..")


def man_entries():
    """{VAR: {"tag", "body"}} from the man page's setting entries: a .TP
    whose tag line is "--flag=METAVAR, VARIABLE", its body the text up to
    the next request."""
    out = {}
    lines = man_source().splitlines()
    for i, line in enumerate(lines):
        if line != ".TP" or i + 1 >= len(lines):
            continue
        tag = roff_text(lines[i + 1])
        m = re.fullmatch(r"(--[a-z0-9-]+)=([A-Z]+), ([A-Z][A-Z0-9_]*)", tag)
        if m is None:
            continue
        body = []
        for b in lines[i + 2:]:
            if b.startswith("."):
                break
            body.append(roff_text(b))
        assert m.group(3) not in out, "ssegate.8 lists %s twice" % m.group(3)
        out[m.group(3)] = {"flag": m.group(1), "tag": tag, "body": " ".join(body)}
    return out


def man_section(name):
    m = re.search(r'^\.SH "?%s"?\n(.*?)(?=^\.SH |\Z)' % re.escape(name), man_source(),
                  re.M | re.S)
    assert m is not None, "ssegate.8 has no %s section" % name
    return roff_text(m.group(1))


def test_man_names():
    same_names("man/ssegate.8's options", man_entries(), help_options())


def test_man_flags_defaults_ranges():
    """Each entry's flag, "Default: X." and "Range: A..B." are --help's."""
    entries = man_entries()
    bad = []
    for var, o in help_options().items():
        e = entries.get(var)
        if e is None:
            continue        # test_man_names reports it
        if e["flag"] != o["flag"]:
            bad.append("%s: flag %s, --help %s" % (var, e["flag"], o["flag"]))
        if "Default: %s." % o["default"] not in e["body"]:
            bad.append("%s: no 'Default: %s.' in %r" % (var, o["default"], e["body"]))
        ranges = re.findall(r"Range: (\d+\.\.\d+)\.", e["body"])
        if ranges != ([o["range"]] if o["range"] else []):
            bad.append("%s: ranges %s, --help %s" % (var, ranges, o["range"]))
    assert not bad, "man/ssegate.8 differs from --help: %s" % "; ".join(bad)


def test_man_names_no_other_setting():
    opts = help_options()
    words = set(SETTING_WORD.findall(roff_text(man_source())))
    unknown = sorted(words - set(opts))
    assert not unknown, "man/ssegate.8 mentions settings ssegate lacks: %s" % unknown


def test_man_signals_and_exit_status():
    """The signals main.c handles, and the statuses it returns: 0 (a clean
    stop), 1 (start-up failed), 2 (bad configuration)."""
    sig = man_section("SIGNALS")
    for s in ("SIGTERM", "SIGINT", "SIGHUP"):
        assert re.search(r"^\.[BT].*\b%s\b" % s, sig, re.M), "SIGNALS lacks %s" % s
    hup = sig[sig.index("SIGHUP"):]
    assert "LOG_FILE" in hup.split(".TP")[0], "SIGHUP's entry must say it reopens LOG_FILE"
    codes = re.findall(r"^\.TP\n\.B (\d+)$", man_section("EXIT STATUS"), re.M)
    assert codes == ["0", "1", "2"], "EXIT STATUS lists %s" % codes
    r = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=10)
    version = r.stdout.strip().split()[-1]
    th = re.search(r'^\.TH SSEGATE 8 \S+ "ssegate ([^"]+)"', man_source(), re.M)
    assert th is not None and th.group(1) == version, \
        ".TH names ssegate %s, the binary is %s" % (th and th.group(1), version)


def test_man_renders_without_warnings():
    """man -l --warnings (man-db) on the page prints nothing on stderr;
    groff -ww -z -man where man-db is missing."""
    page = os.path.join(TOP, "man", "ssegate.8")
    if shutil.which("man"):
        argv = ["man", "-l", "--warnings", page]
    elif shutil.which("groff"):
        argv = ["groff", "-ww", "-z", "-man", page]
    else:
        raise tap.Skip("neither man (man-db) nor groff is installed")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, MANWIDTH="80"))
    assert r.returncode == 0, "%s exits %d: %s" % (argv[0], r.returncode, r.stderr)
    assert r.stderr == "", "%s warns:\n%s" % (argv[0], r.stderr)
    assert "--max-connections-per-client=N, MAX_CONNECTIONS_PER_CLIENT" in r.stdout \
        or argv[0] == "groff", "the rendered page lacks an entry's tag"


TESTS = [test_help_lists_the_table, test_env_example_names, test_env_example_defaults,
         test_env_example_ranges, test_env_example_names_no_other_setting,
         test_readme_names, test_readme_defaults, test_readme_names_no_other_setting,
         test_man_names, test_man_flags_defaults_ranges, test_man_names_no_other_setting,
         test_man_signals_and_exit_status, test_man_renders_without_warnings]


if __name__ == "__main__":
    sys.exit(tap.run(TESTS))
