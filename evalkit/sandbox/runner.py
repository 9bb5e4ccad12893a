"""The trusted code that runs first inside the sandbox and decides whether a program ran to its
end. A program passes only if the process exits 0 *and* writes back a fresh random nonce that
the harness handed it out of band; only this runner writes it, and only after the program's
tests returned.

How the nonce travels: the harness writes it (with the tests) to a file, opens it, unlinks it
and passes the open descriptor; the runner reads it and closes the descriptor before any of the
model's code is compiled, so nothing on disk or in /proc leads to it. The verdict goes to a
second descriptor, a file only the harness reads.

Two modes:

- **tested** (code tasks: solution + tests): the model's code runs in a child process that
  is forked *before* the runner reads the nonce or the tests, and closes both descriptors first
  thing. The tests run in the parent, which never executes a line of the model's code and is
  made non-dumpable (`PR_SET_DUMPABLE` 0), so the child, although the same uid, cannot read its
  memory or descriptors through /proc or ptrace. The candidate function the tests call is a
  proxy: arguments go to the child and results come back as plain data (None, bool, int, float,
  complex, str, bytes, list, tuple, dict, set, frozenset, rebuilt by the parent). So exiting
  early, `SystemExit`, `atexit`/excepthook tricks, rewriting `check`, reading the expected
  answer off the caller's frame, tracing, and objects whose `__eq__` is always true (they
  are not plain data) all end as failures, and nothing the child does reaches the verdict.
- **plain** (a bare program, no tests): the program runs in the runner's own interpreter; it
  passes only if it runs to its last line (any BaseException, `sys.exit` included, is a
  failure). A program that introspects the interpreter could find the nonce here; plain mode
  guards against early exits, not against a program written to forge its own verdict.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

NONCE_BYTES = 16

RUNNER = r'''
import builtins, json, os, sys, traceback

_write, _read, _close, _exit = os.write, os.read, os.close, os._exit
PLAIN = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


def _read_fd(fd):
    chunks = []
    while True:
        chunk = _read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _send(fd, obj):
    data = json.dumps(obj).encode()
    data = len(data).to_bytes(8, "big") + data
    while data:
        data = data[_write(fd, data):]


def _recv(fd):
    head = b""
    while len(head) < 8:
        chunk = _read(fd, 8 - len(head))
        if not chunk:
            return None
        head += chunk
    n = int.from_bytes(head, "big")
    if n > 1 << 28:
        raise ValueError("message too large")
    body = bytearray()
    while len(body) < n:
        chunk = _read(fd, min(n - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return json.loads(bytes(body))


def _encode(v):
    t = type(v)  # exact types only: a subclass may redefine __eq__, __bool__, ...
    if v is None:
        return ["n"]
    if t is bool:
        return ["b", v]
    if t is int:
        return ["i", hex(v)]
    if t is float:
        return ["f", repr(v)]
    if t is complex:
        return ["c", repr(v.real), repr(v.imag)]
    if t is str:
        return ["s", v]
    if t is bytes:
        return ["y", v.hex()]
    if t in (list, tuple, set, frozenset):
        return [{list: "l", tuple: "t", set: "S", frozenset: "F"}[t], [_encode(x) for x in v]]
    if t is dict:
        return ["d", [[_encode(k), _encode(x)] for k, x in v.items()]]
    raise TypeError("not plain data: %s" % t.__name__)


def _decode(e):
    tag = e[0]
    if tag == "n":
        return None
    if tag == "b":
        return bool(e[1])
    if tag == "i":
        return int(e[1], 16)
    if tag == "f":
        return float(e[1])
    if tag == "c":
        return complex(float(e[1]), float(e[2]))
    if tag == "s":
        return str(e[1])
    if tag == "y":
        return bytes.fromhex(e[1])
    if tag in ("l", "t", "S", "F"):
        items = [_decode(x) for x in e[1]]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    if tag == "d":
        return {_decode(k): _decode(x) for k, x in e[1]}
    raise ValueError("bad tag")


def _namespace(path):
    return {"__name__": "__main__", "__file__": path, "__builtins__": builtins}


def _report():
    try:
        traceback.print_exc()
        sys.stderr.flush()
    except BaseException:
        pass


def _finish(verdict_fd, nonce):
    """Write the nonce and leave at once: no atexit handler or thread of anyone else runs."""
    try:
        _write(verdict_fd, nonce.encode())
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:
        _exit(1)
    _exit(0)


def _serve(path, entry, requests, replies):
    """The child: run the model's code, then answer calls of its function with plain data."""
    fn = None
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        ns = _namespace(path)
        exec(compile(source, path, "exec"), ns)
        fn = ns[entry]
    except BaseException:
        _report()
    while True:
        try:
            msg = _recv(requests)
        except BaseException:
            _exit(1)
        if msg is None:
            _exit(0)
        try:
            if fn is None:
                raise RuntimeError("the solution did not load")
            args, kwargs = _decode(msg[0]), _decode(msg[1])
            reply = ["ok", _encode(fn(*args, **kwargs))]
        except BaseException as exc:
            try:
                reply = ["raise", type(exc).__name__, str(exc)[:300]]
            except BaseException:
                reply = ["raise", "RuntimeError", "unprintable exception"]
        try:
            _send(replies, reply)
        except BaseException:
            _exit(1)


class CandidateError(Exception):
    pass


def _proxy(requests, replies, entry):
    def candidate(*args, **kwargs):
        _send(requests, [_encode(list(args)), _encode(dict(kwargs))])
        reply = _recv(replies)
        if reply is None:
            raise CandidateError("the solution's process ended")
        if reply[0] == "ok":
            return _decode(reply[1])
        name, text = str(reply[1]), str(reply[2])
        kind = getattr(builtins, name, None)
        if isinstance(kind, type) and issubclass(kind, Exception):
            raise kind(text)
        raise CandidateError("%s: %s" % (name, text))

    candidate.__name__ = candidate.__qualname__ = entry
    return candidate


def _nodump():
    # The child runs as the same uid: without this it could read our memory via /proc/PID/mem.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass


def _main():
    secret_fd, verdict_fd, path, entry = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if not entry:
        spec = json.loads(_read_fd(secret_fd))
        _close(secret_fd)
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
            exec(compile(source, path, "exec"), _namespace(path))
        except BaseException:
            _report()
            _exit(1)
        _finish(verdict_fd, spec["nonce"])
    _nodump()
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    child = os.fork()
    if child == 0:
        for fd in (secret_fd, verdict_fd, requests_w, replies_r):
            _close(fd)
        _serve(path, entry, requests_r, replies_w)
        _exit(1)
    for fd in (requests_r, replies_w):
        _close(fd)
    spec = json.loads(_read_fd(secret_fd))
    _close(secret_fd)
    try:
        ns = _namespace("<tests>")
        exec(compile(spec["setup"], "<setup>", "exec"), ns)
        exec(compile(spec["test"], "<tests>", "exec"), ns)
        candidate = _proxy(requests_w, replies_r, entry)
        ns[entry] = candidate
        ns["check"](candidate)
    except BaseException:
        _report()
        _exit(1)
    _finish(verdict_fd, spec["nonce"])


_main()
'''


@dataclass(frozen=True)
class Handoff:
    """What one program's runner gets out of band, and what a pass must bring back."""

    nonce: str
    payload: bytes  # written to the secret descriptor
    entry: str  # '' for a plain program


def handoff(setup: str | None = None, test: str | None = None, entry: str = "") -> Handoff:
    nonce = secrets.token_hex(NONCE_BYTES)
    body: dict[str, str] = {"nonce": nonce}
    if entry:
        body |= {"setup": setup or "", "test": test or ""}
    return Handoff(nonce, json.dumps(body).encode(), entry)
