"""LiteLLM proxy (issue 14, finding 3): a bad vcgate configuration stops the proxy at start-up,
with a message naming the setting, instead of a text/plain 500 at the first request."""

from __future__ import annotations

import importlib.util
import os
import subprocess

import pytest

from tests.integration.test_litellm_proxy import MASTER_KEY, REPO, STARTUP_TIMEOUT, _config, _litellm_cmd
from tests.support import require_real
from vcgate.keys import PrivateKey, write_key_file

pytestmark = pytest.mark.integration


def test_a_key_without_its_passphrase_stops_the_start_up(tmp_path):
    if any(importlib.util.find_spec(name) is None for name in ("litellm", "fastapi", "apscheduler")):
        require_real("the LiteLLM proxy", "pip install -e '.[litellm,dev]' (litellm[proxy])")
    key = tmp_path / "gateway.key"
    write_key_file(key, PrivateKey.generate("EdDSA"), passphrase="not given to the proxy")
    (tmp_path / "config.yaml").write_text(_config("http://127.0.0.1:9/v1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VCGATE_", "LITELLM_", "OPENAI_", "DATABASE_URL"))}
    env.update(
        VCGATE_POLICY=str(REPO / "examples" / "policy.yaml"), VCGATE_KEY_FILE=str(key),
        LITELLM_MASTER_KEY=MASTER_KEY, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [*_litellm_cmd(), "--config", "config.yaml", "--host", "127.0.0.1", "--port", "9"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "vcgate: the LiteLLM proxy cannot start" in log and "VCGATE_PASSPHRASE" in log, log[-3000:]
