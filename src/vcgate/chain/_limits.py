"""Keep the interpreter's recursion limit where the application set it.

py_ecc (imported by eth-keys, hence by web3 and eth-account) and py-evm (the embedded chain)
raise ``sys.setrecursionlimit`` to 100,000 when imported. With that limit, the recursion
guard that makes ``json.loads`` refuse deeply nested input (a ``RecursionError``) no longer
fires before the C stack runs out, and hostile JSON crashes the whole process with a
segmentation fault -- measured here: a gateway that imported web3 died on input a plain
process refuses cleanly. vcgate's chain code needs no deep recursion (the registry makes no
nested contract calls), so every import of those libraries is wrapped to put the limit back.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def keep_recursion_limit() -> Iterator[None]:
    limit = sys.getrecursionlimit()
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)
