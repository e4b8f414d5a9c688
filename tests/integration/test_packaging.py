#!/usr/bin/env python3
"""The packaging: packaging/ssegate.service as systemd reads it
(systemd-analyze verify, with the built binary and the manual page in
place; its hardening; its file limit and stop timeout against the
gateway's defaults), and `make install DESTDIR=...` from the build tree
(the binary in sbin, ssegate(8), the unit naming the installed binary,
then `make uninstall` leaving no file). Prints TAP.

  SSEGATE_BIN=path/to/build/ssegate tests/integration/test_packaging.py
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("SSEGATE_BIN") or os.path.join(TOP, "ssegate"))
UNIT_IN = os.path.join(TOP, "packaging", "ssegate.service.in")
# main.c keeps this many descriptors beside the streams (FD_RESERVE).
FD_RESERVE = 64
# The longest shutdown the unit must wait out before SIGKILL: main.c's
# drain (5 s), or SHUTDOWN_GRACE_SECS (10 s by default) once it lands.
SHUTDOWN_GRACE_SECS = 10


def unit_text():
    with open(UNIT_IN, encoding="utf-8") as f:
        return f.read()


def directives():
    """{(section, key): [values]} from the unit, comments dropped."""
    out, section = {}, None
    for line in unit_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        k, eq, v = line.partition("=")
        assert eq, "not KEY=value: %r" % line
        out.setdefault((section, k.strip()), []).append(v.strip())
    return out


def help_default(var):
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10)
    m = re.search(r"^  --\S+\s+%s\s.*default (\S+)\)$" % var, r.stdout, re.M)
    assert m is not None, "%s not in --help" % var
    return m.group(1)


def secs(v):
    m = re.fullmatch(r"(\d+)(s|min)?", v)
    assert m is not None, "a time in seconds or minutes: %r" % v
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def rendered_unit(d, sbindir):
    """The unit as `make` renders it, ExecStart in sbindir, written to d."""
    path = os.path.join(d, "ssegate.service")
    with open(path, "w", encoding="utf-8") as f:
        f.write(unit_text().replace("@sbindir@", sbindir))
    return path


def test_unit_verifies():
    """systemd-analyze verify: no warning, ExecStart's binary present,
    Documentation=man:ssegate(8) found on MANPATH."""
    if shutil.which("systemd-analyze") is None:
        raise tap.Skip("systemd-analyze is not installed (Debian package systemd)")
    with tempfile.TemporaryDirectory() as d:
        unit = rendered_unit(d, os.path.dirname(BIN))
        os.makedirs(os.path.join(d, "man", "man8"))
        shutil.copy(os.path.join(TOP, "man", "ssegate.8"), os.path.join(d, "man", "man8"))
        r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, MANPATH=os.path.join(d, "man")))
        assert r.returncode == 0 and r.stderr == "", \
            "systemd-analyze verify exits %d:\n%s" % (r.returncode, r.stderr)
        # It can fail: a missing binary is reported.
        bad = rendered_unit(d, "/nonexistent")
        r = subprocess.run(["systemd-analyze", "verify", bad], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, MANPATH=os.path.join(d, "man")))
        assert r.returncode != 0 and "/nonexistent/ssegate" in r.stderr, r.stderr


def test_unit_directives():
    u = directives()
    want = {
        "Type": "simple", "EnvironmentFile": "-/etc/ssegate/ssegate.env",
        "ExecStart": "@sbindir@/ssegate", "ExecReload": "/bin/kill -HUP $MAINPID",
        "KillSignal": "SIGTERM", "DynamicUser": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
        "LogsDirectory": "ssegate", "RestartPreventExitStatus": "2",
    }
    bad = ["%s=%s (want %r)" % (k, u.get(("Service", k)), v) for k, v in want.items()
           if u.get(("Service", k)) != [v]]
    assert not bad, "ssegate.service: %s" % "; ".join(bad)
    # io_uring's calls are outside @system-service: a filter would turn
    # every fan-out into one sendmsg per stream.
    assert ("Service", "SystemCallFilter") not in u, "SystemCallFilter blocks io_uring"
    assert u.get(("Unit", "Documentation")) == ["man:ssegate(8)"], u.get(("Unit", "Documentation"))


def test_unit_limits_fit_the_defaults():
    """LimitNOFILE holds MAX_CONNECTIONS streams and the descriptors kept
    beside them; TimeoutStopSec outlasts the drain on SIGTERM."""
    u = directives()
    nofile = int(u[("Service", "LimitNOFILE")][0])
    want = int(help_default("MAX_CONNECTIONS")) + FD_RESERVE
    assert nofile >= want, "LimitNOFILE=%d < MAX_CONNECTIONS + %d = %d" % (nofile, FD_RESERVE, want)
    stop = secs(u[("Service", "TimeoutStopSec")][0])
    assert stop > SHUTDOWN_GRACE_SECS, "TimeoutStopSec=%d, not above %d" % (stop, SHUTDOWN_GRACE_SECS)


def test_unit_exposure():
    """systemd-analyze security rates the unit OK or better."""
    if shutil.which("systemd-analyze") is None:
        raise tap.Skip("systemd-analyze is not installed (Debian package systemd)")
    with tempfile.TemporaryDirectory() as d:
        unit = rendered_unit(d, os.path.dirname(BIN))
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", unit],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for ssegate.service: ([\d.]+) (\w+)", r.stdout)
        assert m is not None, "no exposure level: %s %s" % (r.stdout[-500:], r.stderr)
        assert m.group(2) in ("SAFE", "OK"), "exposure %s %s" % m.groups()


def build_dir():
    """The build tree SSEGATE_BIN was built in, or None."""
    d = os.path.dirname(BIN)
    return d if os.path.isfile(os.path.join(d, "Makefile")) else None


def make(builddir, *args):
    # Not the jobserver of a `make check` that may be running this test.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "-s", "-C", builddir] + list(args), capture_output=True,
                          text=True, timeout=300, env=env)


def files_under(root):
    out = set()
    for dirpath, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def test_make_install():
    builddir = build_dir()
    if builddir is None:
        raise tap.Skip("SSEGATE_BIN is not in a configured build tree")
    with tempfile.TemporaryDirectory() as dest:
        r = make(builddir, "install", "DESTDIR=" + dest)
        assert r.returncode == 0, "make install: %s" % r.stderr[-2000:]
        got = files_under(dest)
        sbin = [f for f in got if re.fullmatch(r".*/sbin/ssegate", f)]
        assert len(sbin) == 1, "one sbin/ssegate, got %s" % sorted(got)
        assert os.access(os.path.join(dest, sbin[0]), os.X_OK), "ssegate not executable"
        assert not any(re.search(r"/bin/ssegate$", f) for f in got), "a copy in bin"
        prefix = sbin[0][:-len("/sbin/ssegate")]
        for f in ("share/man/man8/ssegate.8", "share/doc/ssegate/README.md",
                  "share/doc/ssegate/OPERATIONS.md", "share/doc/ssegate/examples/env.example",
                  "share/doc/ssegate/examples/nginx.conf",
                  "share/doc/ssegate/examples/haproxy.cfg",
                  "share/doc/ssegate/examples/ssegate.service"):
            assert os.path.join(prefix, f) in got, "%s not installed: %s" % (f, sorted(got))
        r = subprocess.run([os.path.join(dest, sbin[0]), "--version"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and r.stdout.startswith("ssegate "), r
        # Every installed unit (the example, and the one in systemd's
        # directory when configured so) starts the installed binary.
        units = [f for f in got if f.endswith("/ssegate.service")]
        for f in units:
            with open(os.path.join(dest, f), encoding="utf-8") as u:
                m = re.search(r"^ExecStart=(\S+)$", u.read(), re.M)
            assert m is not None and m.group(1) == "/" + sbin[0], \
                "%s: ExecStart=%s, the binary is /%s" % (f, m and m.group(1), sbin[0])
        r = make(builddir, "uninstall", "DESTDIR=" + dest)
        assert r.returncode == 0, "make uninstall: %s" % r.stderr[-2000:]
        left = files_under(dest)
        assert not left, "make uninstall left %s" % sorted(left)


TESTS = [test_unit_verifies, test_unit_directives, test_unit_limits_fit_the_defaults,
         test_unit_exposure, test_make_install]


if __name__ == "__main__":
    sys.exit(tap.run(TESTS))
