"""latchtest.py — what the integration tests of latchd share: "ok - "/"FAIL - " lines and
the list of failures, free loopback ports, and a bounded wait for a condition (never a
timed assertion: the wait only gives up after a generous limit)."""
import socket
import time

failures = []  # names of the failed checks, in order; the scripts exit 1 when not empty


def ok(name):
    print("ok - " + name, flush=True)


def fail(name, detail=""):
    failures.append(name)
    print("FAIL - " + name, flush=True)
    for line in str(detail).rstrip().splitlines():
        print("    " + line, flush=True)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(name, detail)
    return cond


def free_ports(n):
    """n distinct free loopback TCP ports (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(pred, timeout, interval=0.1):
    """Polls pred() until it returns a true value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
