#!/usr/bin/env python3
"""memdrift end-to-end test runner.

    tests/e2e/run.py [-k SUBSTRING]... [--skip SUBSTRING]... [--list] [-x]

Discovers tests/e2e/test_*.py, runs every function test_* (each case of a
parametrized one; see lib.py) in a fresh scratch directory, prints one line
per test:

    PASS test_snapshot.test_sites_go1.22_pie  1.3s
    FAIL test_badinput.test_usage  0.1s: <assertion message>
    SKIP test_attach.test_x  0.0s: <reason>

and ends with exactly "N passed, N failed, N skipped". Exit status 1 when
anything failed. -k keeps tests whose full name contains any SUBSTRING.
Every process a test started is killed when the test ends, pass or fail.
"""

import argparse
import importlib
import inspect
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lib  # noqa: E402

DEFAULT_TIMEOUT = 120


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout()


def _terminate(signum, frame):
    lib.kill_all()
    sys.stdout.write("\ninterrupted by signal %d\n" % signum)
    sys.stdout.flush()
    os._exit(130)


def collect(filters, skips=()):
    """Yields (full_name, fn, args) or (full_name, None, skip_or_error)."""
    items = []
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        modname = fname[:-3]
        try:
            mod = importlib.import_module(modname)
        except Exception as e:  # noqa: BLE001 — a broken test file is a failure
            items.append((modname, None, ("error", "import failed: %s: %s"
                                          % (type(e).__name__, e))))
            continue
        fns = [(n, f) for n, f in vars(mod).items()
               if n.startswith("test_") and inspect.isfunction(f)
               and f.__module__ == mod.__name__]
        fns.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
        for name, fn in fns:
            base = "%s.%s" % (modname, name)
            gen = getattr(fn, "cases", None)
            if gen is None:
                items.append((base, fn, ()))
                continue
            try:
                cs = list(gen())
            except lib.Skip as e:
                items.append((base, None, ("skip", str(e))))
                continue
            except AssertionError as e:
                items.append((base, None, ("error", str(e))))
                continue
            except Exception as e:  # noqa: BLE001
                items.append((base, None, ("error", "case generator failed: %s: %s"
                                           % (type(e).__name__, e))))
                continue
            for cid, args in cs:
                items.append(("%s_%s" % (base, cid), fn, tuple(args)))
    if filters:
        items = [it for it in items if any(k in it[0] for k in filters)]
    if skips:
        items = [it for it in items if not any(k in it[0] for k in skips)]
    return items


def one_line(msg):
    msg = str(msg).strip() or "(no message)"
    lines = msg.splitlines()
    if len(lines) == 1:
        return lines[0]
    return lines[0] + "\n" + "\n".join("        " + l for l in lines[1:])


def run_one(name, fn, args, keep):
    tmp = tempfile.mkdtemp(prefix="memdrift-e2e-")
    ctx = lib.Ctx(name, tmp)
    limit = getattr(fn, "timeout", DEFAULT_TIMEOUT)
    status, msg = "PASS", ""
    t0 = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit)
    try:
        try:
            fn(ctx, *args)
        finally:
            signal.alarm(0)
    except lib.Skip as e:
        status, msg = "SKIP", str(e)
    except TestTimeout:
        status, msg = "FAIL", "timed out after %ds" % limit
    except AssertionError as e:
        status = "FAIL"
        msg = str(e)
        if not msg:
            # bare `assert x`: show the failing source line
            tb = traceback.extract_tb(e.__traceback__)
            fr = tb[-1]
            msg = "assertion failed at %s:%d: %s" % (os.path.basename(fr.filename),
                                                     fr.lineno, fr.line)
    except Exception as e:  # noqa: BLE001
        tb = traceback.extract_tb(e.__traceback__)[-1]
        status, msg = "FAIL", "%s: %s (at %s:%d)" % (type(e).__name__, e,
                                                     os.path.basename(tb.filename), tb.lineno)
    errs = ctx.run_cleanups()
    if errs and status == "PASS":
        status, msg = "FAIL", "cleanup failed: " + "; ".join(errs)
    el = time.monotonic() - t0
    if status == "FAIL" and keep:
        msg += "\n(scratch kept: %s)" % tmp
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    line = "%s %s  %.1fs" % (status, name, el)
    if ctx.notes and status == "PASS":
        line += "  (%s)" % "; ".join(ctx.notes)
    if msg:
        line += ": " + one_line(msg)
    print(line, flush=True)
    return status


def main():
    ap = argparse.ArgumentParser(description="memdrift e2e tests")
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                    help="run only tests whose name contains SUBSTRING (repeatable)")
    ap.add_argument("--skip", action="append", default=[], metavar="SUBSTRING",
                    help="leave out tests whose name contains SUBSTRING (repeatable)")
    ap.add_argument("--list", action="store_true", help="list test names and exit")
    ap.add_argument("-x", action="store_true", help="stop at the first failure")
    ap.add_argument("--keep", action="store_true", help="keep scratch dirs of failed tests")
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    os.chdir(lib.ROOT)
    items = collect(a.k, a.skip)
    if a.list:
        try:
            for name, fn, args in items:
                print(name)
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    try:
        for name, fn, args in items:
            if fn is None:
                kind, msg = args
                status = "SKIP" if kind == "skip" else "FAIL"
                print("%s %s  0.0s: %s" % (status, name, one_line(msg)), flush=True)
            else:
                status = run_one(name, fn, args, a.keep)
            counts[status] += 1
            if a.x and status == "FAIL":
                break
    finally:
        lib.kill_all()
    print("%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]),
          flush=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
