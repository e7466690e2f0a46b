"""One passphrase variable (issue 14, finding 2): VCGATE_PASSPHRASE, read the same way by the
CLI, Holder, Gate, GateConfig (vcgate serve and the plugins); VCGATE_KEY_PASSPHRASE is a
deprecated alias that warns; every passphrase error names VCGATE_PASSPHRASE."""

from __future__ import annotations

import warnings

import pytest

from vcgate.assembly import GateConfig
from vcgate.client import Holder
from vcgate.errors import PassphraseError
from vcgate.gate import Gate
from vcgate.keys import PrivateKey, passphrase_from_env, read_key_file, write_key_file

PW = "correct horse battery"
POLICY = "examples/policy.yaml"


@pytest.fixture
def key_file(tmp_path):
    key = PrivateKey.generate("EdDSA")
    path = tmp_path / "gateway.key"
    write_key_file(path, key, passphrase=PW)
    return path, key


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("VCGATE_PASSPHRASE", raising=False)
    monkeypatch.delenv("VCGATE_KEY_PASSPHRASE", raising=False)
    return monkeypatch


def _load_gate(path):
    return Gate.from_policy_file(POLICY, key_file=path).token_issuer


def _load_holder(path):
    return Holder.from_key_file(path, credentials=[]).key


def _load_config(path):
    import os

    return read_key_file(path, passphrase=GateConfig.from_env({**os.environ, "VCGATE_POLICY": POLICY}).key_passphrase)


LOADERS = [pytest.param(_load_gate, id="Gate"), pytest.param(_load_holder, id="Holder"),
           pytest.param(_load_config, id="GateConfig")]


@pytest.mark.parametrize("load", LOADERS)
def test_every_reader_takes_vcgate_passphrase(load, key_file, clean_env):
    path, key = key_file
    clean_env.setenv("VCGATE_PASSPHRASE", PW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(path).public_key == key.public_key


@pytest.mark.parametrize("load", LOADERS)
def test_deprecated_alias_works_and_warns(load, key_file, clean_env):
    path, key = key_file
    clean_env.setenv("VCGATE_KEY_PASSPHRASE", PW)
    with pytest.warns(FutureWarning, match="VCGATE_KEY_PASSPHRASE is deprecated: set VCGATE_PASSPHRASE"):
        assert load(path).public_key == key.public_key


@pytest.mark.parametrize("load", LOADERS)
@pytest.mark.parametrize(
    "env",
    [pytest.param({}, id="unset"), pytest.param({"VCGATE_PASSPHRASE": "wrong"}, id="wrong"),
     pytest.param({"VCGATE_PASSPHRASE": ""}, id="empty")],
)
def test_every_passphrase_error_names_the_variable(load, env, key_file, clean_env):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(PassphraseError, match="VCGATE_PASSPHRASE") as info:
        load(key_file[0])
    assert info.value.code == "passphrase_invalid"


def test_the_new_name_wins_over_the_alias():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert passphrase_from_env({"VCGATE_PASSPHRASE": "a", "VCGATE_KEY_PASSPHRASE": "b"}) == "a"
    assert passphrase_from_env({}) is None
