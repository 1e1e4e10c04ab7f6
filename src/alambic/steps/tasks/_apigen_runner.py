"""Runs function calls for ``APIGenExecutionChecker`` in a separate, restricted interpreter.

This file is executed as a script (``python -I _apigen_runner.py``), never imported by the
pipeline: it uses the standard library only. It reads one JSON request from stdin::

    {"libpath": "...", "calls": [{"name": ..., "arguments": {...}}], "block": true,
     "cpu_seconds": 6, "memory_bytes": 2147483648}

lowers its own resource limits, installs an audit hook that refuses process creation,
network access, file writes and deletions (when ``block``), loads the library and runs each
call, then writes ``{"results": [{"ok": bool, "value": str}]}`` as one JSON line to the
original stdout (what the functions print is captured and dropped).
"""

import contextlib
import importlib.util
import io
import json
import os
import resource
import sys
from pathlib import Path

_BLOCKED_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "subprocess.Popen",
    "pty.spawn",
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "os.remove",
    "os.rmdir",
    "os.rename",
    "os.link",
    "os.symlink",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.mkdir",
    "os.putenv",
    "os.unsetenv",
    "shutil.rmtree",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.addressof",
    "sys.addaudithook",
    "sys.setprofile",
    "sys.settrace",
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class Blocked(PermissionError):
    pass


def _hook(event, args):  # type: ignore[no-untyped-def]
    if event.startswith(_BLOCKED_EVENTS):
        raise Blocked(f"blocked by the sandbox: {event} is not allowed in an executed function")
    if event == "open":
        mode = args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else 0
        writes = isinstance(mode, str) and any(c in mode for c in "wax+")
        if writes or (isinstance(flags, int) and flags & _WRITE_FLAGS):
            raise Blocked(f"blocked by the sandbox: opening {args[0]!r} for writing")


def _limit(kind: int, value: int) -> None:
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(kind, (value, hard))


def _load(libpath: Path, name: str, cache: dict) -> object:  # type: ignore[type-arg]
    files = [libpath] if libpath.is_file() else []
    if libpath.is_dir():
        own = libpath / f"{name}.py"
        files = [own] if own.is_file() else sorted(libpath.glob("*.py"))
    for file in files:
        module = cache.get(file)
        if module is None:
            spec = importlib.util.spec_from_file_location(f"apigen_lib_{file.stem}", file)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            cache[file] = module
        function = getattr(module, name, None)
        if callable(function):
            return function
    raise LookupError(f"no function {name!r} in {libpath}")


def main() -> None:
    sys.dont_write_bytecode = True
    out = os.fdopen(os.dup(1), "w")
    request = json.loads(sys.stdin.read())
    _limit(resource.RLIMIT_CPU, int(request.get("cpu_seconds", 10)))
    _limit(resource.RLIMIT_AS, int(request.get("memory_bytes", 2 << 30)))
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, 0)
    if request.get("block", True):
        sys.addaudithook(_hook)
    libpath = Path(request["libpath"])
    cache: dict = {}  # type: ignore[type-arg]
    results = []
    for call in request["calls"]:
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                function = _load(libpath, call["name"], cache)
                value = function(**call.get("arguments", {}))  # type: ignore[operator]
            text = value if isinstance(value, str) else repr(value)
            results.append({"ok": True, "value": text})
        except BaseException as exc:  # a failed call is a result, reported to the checker
            results.append({"ok": False, "value": f"{type(exc).__name__}: {exc}"})
    out.write(json.dumps({"results": results}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
