#!/usr/bin/python3
"""test_liblatch_api.py LATCHD LIBLATCH_API — runs the C program liblatch_api (liblatch's
async API: multi, fences, locks, an observed election, a cancelled watch, a session lost
after its lease is revoked) against a three-member cluster; its "ok"/"FAIL" lines are the
checks."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import check, cluster, fail, failures, sanitizer_check  # noqa: E402

LATCHD, PROG = sys.argv[1], sys.argv[2]


def main():
    tmp = tempfile.mkdtemp(prefix="liblatch-api-")
    members, healthy = cluster(LATCHD, os.path.join(tmp, "c"), 3)
    try:
        if not healthy:
            fail("three members healthy", "\n".join(m.tail() for m in members))
            return
        eps = ",".join(m.endpoint for m in members)
        try:
            p = subprocess.run([PROG, eps], capture_output=True, text=True, timeout=120)
            out, err, rc = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err, rc = "timeout", "timeout"
        sys.stdout.write(out)
        for line in out.splitlines():
            if line.startswith("FAIL - "):
                failures.append(line[7:])
        check("liblatch_api exits 0 with no sanitizer report", rc == 0 and not any(
            s in err for s in ("AddressSanitizer", "runtime error:", "LeakSanitizer")),
            "exit %s\n%s" % (rc, err[-3000:]))
    finally:
        for m in members:
            m.kill()
        sanitizer_check(members, "latchd")
        if not failures:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    start = time.time()
    main()
    print("# %.1f s" % (time.time() - start))
    sys.exit(1 if failures else 0)
