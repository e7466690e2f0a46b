"""One Markdown page's Python session, for tests/test_docs.py.

The page's Python blocks run here in order, in one namespace, as a reader pasting them into
one interpreter would: a later block sees the names an earlier one made. Commands arrive on
stdin, one JSON object a line: ``{"name": "docs/x.md:12", "code": "...", "env": {...}}`` (``env``:
the variables the page's shell exported so far). The block's output goes to this process's
stdout/stderr; the outcome goes back on the file descriptor given as argv[1], one JSON line.
Top-level ``await`` / ``async with`` run in a fresh event loop, as in ``python -m asyncio``.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import linecache
import os
import sys
import traceback


def main() -> None:
    results = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": __builtins__}
    for line in sys.stdin:
        command = json.loads(line)
        os.environ.update(command.get("env", {}))
        name, code = command["name"], command["code"]
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # source in tracebacks
        ok = True
        try:
            compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(compiled, namespace)  # noqa: S307 -- running the docs' code is the point
            if inspect.iscoroutine(result):
                asyncio.run(result)
        except SystemExit as exc:
            ok = exc.code in (0, None)
            if not ok:
                traceback.print_exc()
        except BaseException:  # a block's SystemExit or KeyboardInterrupt fails that block only
            traceback.print_exc()
            ok = False
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(json.dumps({"ok": ok}) + "\n")


if __name__ == "__main__":
    main()
