"""tap.py -- runs plain test functions (no gateway, no Redis) and prints
TAP: one "ok"/"not ok" line each, with the failure's traceback as
comments. For the checks of files and sources; the suites that start
gateways have their own main (test_gateway.py)."""
import traceback


class Skip(Exception):
    """Raised by a test that cannot run here (a tool is missing): TAP's
    "ok N - name # SKIP reason", which automake counts as a skip."""


def run(tests):
    """Runs every test in order; returns the exit status (1 if any failed)."""
    print("1..%d" % len(tests))
    failed = 0
    for i, t in enumerate(tests, 1):
        try:
            t()
            print("ok %d - %s" % (i, t.__name__))
        except Skip as e:
            print("ok %d - %s # SKIP %s" % (i, t.__name__, e))
        except Exception as e:
            failed += 1
            print("not ok %d - %s" % (i, t.__name__))
            for line in ("%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())).splitlines():
                print("# " + line)
    return 1 if failed else 0
