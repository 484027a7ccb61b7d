#!/usr/bin/python3
"""test_liblatch_install.py LATCHD BUILD_DIR SOURCE_DIR — liblatch as a user gets it: `cmake
--install` of the build into a temporary prefix, the example program of docs/liblatch.md
compiled with `pkg-config --cflags --libs latch` from that prefix only (no source tree on
the include path), linked against the installed liblatch.so, and run against a three-member
cluster: it must take a lock, make a fenced write, see its stale token refused and win an
election. Also: the installed header compiles alone, liblatch.so needs no library of ours,
and the static archive links too."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from latchtest import check, cluster, fail, failures, sanitizer_check  # noqa: E402

LATCHD, BUILD, SRC = sys.argv[1], sys.argv[2], sys.argv[3]


def run(cmd, timeout=120, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    return p, "$ %s\nexit %s\nstdout: %s\nstderr: %s" % (
        " ".join(cmd), p.returncode, p.stdout, p.stderr[-3000:])


def main():
    tmp = tempfile.mkdtemp(prefix="liblatch-install-")
    prefix = os.path.join(tmp, "prefix")
    p, d = run(["cmake", "--install", BUILD, "--prefix", prefix])
    check("cmake --install into a temporary prefix", p.returncode == 0, d)
    for f in ("include/latch/latch.h", "include/latch/latch_error.h", "lib/liblatch.a",
              "lib/liblatch.so", "lib/pkgconfig/latch.pc", "bin/latchctl"):
        check("installed " + f, os.path.exists(os.path.join(prefix, f)), f)
    p, d = run(["ldd", os.path.join(prefix, "lib", "liblatch.so")])
    check("liblatch.so depends on system libraries only (no liblatch_* of the build)",
          p.returncode == 0 and "not found" not in p.stdout and "latch_" not in p.stdout, d)

    with open(os.path.join(SRC, "docs", "liblatch.md")) as f:
        doc = f.read()
    m = re.search(r"<!-- example:begin -->\s*```c\n(.*?)```\s*<!-- example:end -->", doc, re.S)
    check("docs/liblatch.md has the example", m is not None)
    if m is None:
        return
    src = os.path.join(tmp, "example.c")
    with open(src, "w") as f:
        f.write(m.group(1))
    env = {"PKG_CONFIG_PATH": os.path.join(prefix, "lib", "pkgconfig")}
    p, d = run(["pkg-config", "--cflags", "--libs", "latch"], env=env)
    check("pkg-config --cflags --libs latch", p.returncode == 0 and "-llatch" in p.stdout, d)
    flags = p.stdout.split()
    exe = os.path.join(tmp, "example")
    p, d = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", src, "-o", exe] + flags
               + ["-Wl,-rpath," + os.path.join(prefix, "lib")])
    check("the docs example compiles and links with pkg-config's flags", p.returncode == 0, d)
    # The static archive links on its own too (with its private requirements).
    p2, _ = run(["pkg-config", "--static", "--cflags", "--libs", "latch"], env=env)
    exe_static = os.path.join(tmp, "example-static")
    p3, d3 = run(["cc", "-std=c11", src, "-o", exe_static, "-I" + os.path.join(prefix, "include"),
                  os.path.join(prefix, "lib", "liblatch.a")]
                 + [f for f in p2.stdout.split() if f != "-llatch"])
    check("the example links statically against liblatch.a", p3.returncode == 0, d3)
    if p.returncode != 0:
        return

    members, healthy = cluster(LATCHD, os.path.join(tmp, "c"), 3)
    try:
        if not healthy:
            fail("three members healthy", "\n".join(mb.tail() for mb in members))
            return
        eps = ",".join(mb.endpoint for mb in members)
        p, d = run([exe, eps], timeout=60)
        out = p.stdout
        lock = re.search(r"^lock token (\d+)$", out, re.M)
        write = re.search(r"^fenced write at revision (\d+)$", out, re.M)
        leader = re.search(r"^leader me token (\d+)$", out, re.M)
        check("the example runs: lock token, fenced write, stale token refused, leader",
              p.returncode == 0 and lock and write and leader
              and "stale token: fencing token is not current" in out
              and int(write.group(1)) > int(lock.group(1))
              and int(leader.group(1)) > int(write.group(1)), d)
        if os.path.exists(exe_static):
            p, d = run([exe_static, eps], timeout=60)
            check("the statically linked example runs too", p.returncode == 0, d)
    finally:
        for mb in members:
            mb.kill()
        sanitizer_check(members, "latchd")
        if not failures:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    start = time.time()
    main()
    print("# %.1f s" % (time.time() - start))
    sys.exit(1 if failures else 0)
