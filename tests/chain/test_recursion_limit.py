"""Using vcgate.chain leaves the interpreter's recursion limit alone.

py_ecc and py-evm raise it to 100,000 on import; at that limit json.loads no longer refuses
deeply nested input with a RecursionError but overflows the C stack and kills the process.
Checked in a fresh interpreter, where nothing else has imported them.
"""

from __future__ import annotations

import subprocess
import sys

from tests.chain.helpers import REPO, require_chain_stack

require_chain_stack()

SCRIPT = """
import json, os, sys
before = sys.getrecursionlimit()
from vcgate.chain import RegistryClient, connect, deploy_registry, eth_account_from_key, fetch_events
from vcgate.keys import PrivateKey
chain = connect()
account = eth_account_from_key(PrivateKey.generate("ES256K"))
chain.fund(account.address, 10**18)
registry = RegistryClient(chain, deploy_registry(chain, account))
registry.change_status(account, revoked=True, revocation_list=os.urandom(32), revocation_key=os.urandom(32))
fetch_events(chain, registry.address, 0, chain.block_number())
assert sys.getrecursionlimit() == before, (before, sys.getrecursionlimit())
try:
    json.loads("[" * 200_000 + "]" * 200_000)
except RecursionError:
    print("refused")
"""


def test_recursion_limit_untouched_and_deep_json_refused():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=False, capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "refused"
