"""The issuer's off-chain revocation story through the CLI, against a real HTTPS list host.

key new (issuer, agent) -> status-list create -> issue --status bitstring (twice) ->
status-list publish into a served directory -> verify (valid) -> revoke --publish ->
verify (revoked; the other credential still valid) -> unrevoke -> valid again; a suspension
list; a presentation carrying a revoked credential; --no-status-lists; status-list show; the
SSRF default refusing the loopback list host; a tampered list; usage errors.

The list host is a TLS server on 127.0.0.1 with a certificate for ``status.test`` from a
throwaway CA (``--ca-bundle``). Only name resolution is faked, and only for ``status.test``:
the resolver SafeFetcher uses by default is monkeypatched; the address policy, pinning and
TLS checks all run as in production, so ``--allow-network 127.0.0.1/32`` is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import vcgate.fetch
from tests.https_server import FileHandler, FileServer, make_pki, resolve_hosts, serving
from vcgate.cli import cli
from vcgate.keys import b64url_decode, b64url_encode

pytestmark = pytest.mark.integration

HOST = "status.test"  # RFC 6761: never in real DNS
PASS = "status-list-integration-passphrase"
ENV: dict[str, str | None] = {"VCGATE_PASSPHRASE": PASS, "VCGATE_DEBUG": None, "VCGATE_STATUS_LIST": None}
AUD = "https://models.example.com"
NONCE = "n-status-1"


# --- running the CLI ------------------------------------------------------------------------


def run(*args: Any, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=dict(ENV), catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


def refused(result: Result, code: str) -> str:
    """A refusal on stderr: exit 1, ``error: <code>: ...``; returns the message."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    prefix = f"error: {code}: "
    line = next((l for l in result.stderr.splitlines() if l.startswith(prefix)), None)
    assert line is not None, result.stderr
    return line[len(prefix):]


def usage(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def verify_json(world: World, token_file: Path, *extra: Any, network: bool = True) -> tuple[int, dict[str, Any], Result]:
    net: Sequence[Any] = ("--allow-network", "127.0.0.1/32", "--ca-bundle", world.ca) if network else ()
    result = run("verify", "--json", "--resolver", "local", *net, *extra, token_file)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), (result.exit_code, result.stdout, result.stderr)
    return result.exit_code, json.loads(result.stdout), result


def assert_valid(world: World, token_file: Path, *extra: Any) -> dict[str, Any]:
    code, body, result = verify_json(world, token_file, *extra)
    assert (code, body["valid"]) == (0, True), (body, result.stderr)
    return body


def assert_refused_json(world: World, token_file: Path, error: str, *extra: Any, network: bool = True) -> str:
    code, body, result = verify_json(world, token_file, *extra, network=network)
    assert (code, body["valid"], body["error"]) == (1, False, error), (body, result.stderr)
    return body["message"]


# --- a TLS list host ------------------------------------------------------------------------


class _Handler(FileHandler):
    """Serves the files of the served directory, read afresh on every request."""

    content_type = "application/vc+jwt"


# --- the issuer's world, built once through the CLI -------------------------------------------


class World:
    def __init__(self, work: Path, server: FileServer, ca: Path) -> None:
        self.work = work
        self.server = server
        self.ca = ca
        self.served = server.root
        self.issuer_key = work / "issuer.key"
        self.agent_key = work / "agent.key"
        self.issuer = ""
        self.agent = ""

    def url(self, path: str) -> str:
        return f"https://{HOST}:{self.server.port}{path}"

    def issue(self, state: Path, out: str) -> tuple[Path, dict[str, Any]]:
        result = ok(run("issue", "--key", self.issuer_key, "--subject", self.agent, "--type", "AgentCredential",
                        "--claims", '{"models": ["gpt-4o"]}', "--valid-for", "1d",
                        "--status", "bitstring", "--status-list", state))
        path = self.work / out
        path.write_text(result.stdout)
        payload = json.loads(b64url_decode(result.stdout.strip().split(".")[1]))
        return path, payload["credentialStatus"]

    def publish(self, state: Path, served_path: str) -> Path:
        out = self.served / served_path.lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        result = ok(run("status-list", "publish", "--status-list", state, "--key", self.issuer_key, "--out", out))
        assert "serve it at" in result.stderr
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("status-cli")
    # A throwaway CA (cert.pem, for --ca-bundle) and a server certificate for status.test.
    pki = make_pki(work, HOST, ca_name="vcgate status-list CLI test CA", ca_file="cert.pem")
    served = work / "www"
    served.mkdir()
    with serving(FileServer(pki.server_context(), served, _Handler)) as server:
        w = World(work, server, pki.ca)
        w.issuer = ok(run("key", "new", "--out", w.issuer_key)).stdout.strip()
        w.agent = ok(run("key", "new", "--alg", "ES256", "--out", w.agent_key)).stdout.strip()
        assert w.issuer.startswith("did:key:") and w.agent.startswith("did:key:")
        yield w


@pytest.fixture(autouse=True)
def status_test_resolves_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake DNS for status.test only; every other name goes to the real resolver."""
    resolve = resolve_hosts({HOST: ["127.0.0.1"]}, fallback=vcgate.fetch.system_resolve_host)
    monkeypatch.setattr(vcgate.fetch, "system_resolve_host", resolve)


def create_list(world: World, name: str, path: str, *extra: str) -> Path:
    state = world.work / name
    result = ok(run("status-list", "create", "--url", world.url(path), "--out", state, *extra))
    assert f"wrote {state}" in result.stderr
    return state


def show(state: Path) -> dict[str, Any]:
    return json.loads(ok(run("status-list", "show", "--json", state)).stdout)


@pytest.fixture(scope="module")
def revocation(world: World) -> dict[str, Any]:
    """One revocation list at /lists/1 with two credentials, published."""
    state = create_list(world, "state.json", "/lists/1")
    cred1, entry1 = world.issue(state, "cred1.jwt")
    cred2, entry2 = world.issue(state, "cred2.jwt")
    published = world.publish(state, "/lists/1")
    return {"state": state, "cred1": cred1, "cred2": cred2, "entry1": entry1, "entry2": entry2,
            "published": published}


# --- the story --------------------------------------------------------------------------------


def test_issued_entries_point_at_distinct_random_indices(world: World, revocation: dict[str, Any]) -> None:
    e1, e2 = revocation["entry1"], revocation["entry2"]
    for entry in (e1, e2):
        assert entry["type"] == "BitstringStatusListEntry"
        assert entry["statusPurpose"] == "revocation"
        assert entry["statusListCredential"] == world.url("/lists/1")
        assert entry["id"] == f"{world.url('/lists/1')}#{entry['statusListIndex']}"
        assert 0 <= int(entry["statusListIndex"]) < 131072
    assert e1["statusListIndex"] != e2["statusListIndex"]
    assert show(revocation["state"]) == {"url": world.url("/lists/1"), "format": "bitstring", "purpose": "revocation", "length": 131072,
                                         "allocated": 2, "free": 131070, "set": 0}


def test_revoke_then_unrevoke_over_https(world: World, revocation: dict[str, Any]) -> None:
    state, cred1, cred2, published = (revocation[k] for k in ("state", "cred1", "cred2", "published"))
    hits = world.server.hits

    before = hits["/lists/1"]
    body = assert_valid(world, cred1)
    assert body["status"] == [revocation["entry1"]]
    assert_valid(world, cred2)
    # Each CLI run builds a fresh verifier (and cache): every verify fetches the list again.
    assert hits["/lists/1"] == before + 2

    result = ok(run("revoke", "--status-list", state, "--key", world.issuer_key, "--publish", published, cred1))
    index1 = revocation["entry1"]["statusListIndex"]
    assert f"revoked index {index1} of {world.url('/lists/1')} (revocation); published {published}" in result.stdout
    assert show(state)["set"] == 1

    message = assert_refused_json(world, cred1, "revoked")
    assert message
    assert_valid(world, cred2)  # its bit is untouched
    # Without --json: the refusal on stderr, exit 1.
    refused(run("verify", "--resolver", "local", "--allow-network", "127.0.0.1/32", "--ca-bundle", world.ca, cred1),
            "revoked")

    # A presentation carrying the revoked credential is refused too.
    vp = ok(run("present", "--key", world.agent_key, "--aud", AUD, "--nonce", NONCE, cred1)).stdout
    vp_file = world.work / "vp-revoked.jwt"
    vp_file.write_text(vp)
    assert_refused_json(world, vp_file, "revoked", "--aud", AUD, "--nonce", NONCE)
    vp_ok = world.work / "vp-ok.jwt"
    vp_ok.write_text(ok(run("present", "--key", world.agent_key, "--aud", AUD, "--nonce", NONCE, cred2)).stdout)
    body = assert_valid(world, vp_ok, "--aud", AUD, "--nonce", NONCE)
    assert body["kind"] == "presentation" and len(body["credentials"]) == 1

    # Revoking again is idempotent.
    ok(run("revoke", "--json", "--status-list", state, "--key", world.issuer_key, "--publish", published, cred1))
    assert show(state)["set"] == 1

    result = ok(run("unrevoke", "--json", "--status-list", state, "--key", world.issuer_key, "--publish", published,
                    cred1))
    body = json.loads(result.stdout)
    # The credential is in the issuer's record (the session's, tests/conftest.py): kept in step.
    assert body.pop("record")["id"] == json.loads(b64url_decode(cred1.read_text().split(".")[1]))["id"]
    assert body == {
        "status": "reinstated",
        "changes": [{"list": world.url("/lists/1"), "purpose": "revocation", "index": int(index1)}],
    }
    assert show(state)["set"] == 0
    assert_valid(world, cred1)
    assert_valid(world, vp_file, "--aud", AUD, "--nonce", NONCE)


def test_suspension_list(world: World) -> None:
    state = create_list(world, "suspension.json", "/lists/2", "--purpose", "suspension")
    cred, entry = world.issue(state, "cred-susp.jwt")
    assert entry["statusPurpose"] == "suspension"
    published = world.publish(state, "/lists/2")
    assert_valid(world, cred)

    result = ok(run("revoke", "--status-list", state, "--key", world.issuer_key, "--publish", published, cred))
    assert "(suspension)" in result.stdout
    assert_refused_json(world, cred, "suspended")
    ok(run("unrevoke", "--status-list", state, "--key", world.issuer_key, "--publish", published, cred))
    assert_valid(world, cred)
    assert show(state)["purpose"] == "suspension"


def test_no_status_lists_skips_the_fetch_and_warns(world: World, revocation: dict[str, Any]) -> None:
    cred2 = revocation["cred2"]
    before = world.server.hits["/lists/1"]
    result = run("verify", "--resolver", "local", "--no-status-lists", cred2)
    ok(result)
    assert result.stdout.startswith("valid credential")
    warning = next(l for l in result.stderr.splitlines() if l.startswith("warning: "))
    assert "credentialStatus BitstringStatusListEntry was not checked" in warning
    assert "--no-status-lists" in warning  # says why, rather than pointing at --rpc
    # --json: stdout stays pure JSON, the warning still on stderr.
    code, body, result = verify_json(world, cred2, "--no-status-lists", network=False)
    assert (code, body["valid"]) == (0, True)
    assert "BitstringStatusListEntry was not checked" in result.stderr
    assert world.server.hits["/lists/1"] == before  # nothing fetched


def test_loopback_list_host_refused_without_allow_network(world: World, revocation: dict[str, Any]) -> None:
    """The SSRF default: status.test resolves to 127.0.0.1, which is never fetched unless allowed."""
    before = sum(world.server.hits.values())
    message = assert_refused_json(world, revocation["cred2"], "status_list_invalid", "--ca-bundle", world.ca,
                                  network=False)
    assert "forbidden address (loopback address)" in message
    assert "127.0.0.1" not in message  # the resolved address stays out of messages
    message = refused(run("verify", "--resolver", "local", revocation["cred2"]), "status_list_invalid")
    assert "loopback address" in message
    assert sum(world.server.hits.values()) == before  # refused before connecting


def test_untrusted_certificate_is_unavailable(world: World, revocation: dict[str, Any]) -> None:
    message = assert_refused_json(world, revocation["cred2"], "status_unavailable", "--allow-network",
                                  "127.0.0.1/32", network=False)
    assert "TLS" in message


def test_tampered_list_refused(world: World) -> None:
    state = create_list(world, "tamper.json", "/lists/3")
    cred, _ = world.issue(state, "cred-tamper.jwt")
    published = world.publish(state, "/lists/3")
    assert_valid(world, cred)

    h, p, s = published.read_text().strip().split(".")
    sig = bytearray(b64url_decode(s))
    sig[5] ^= 0x01
    published.write_text(f"{h}.{p}.{b64url_encode(bytes(sig))}\n")
    message = assert_refused_json(world, cred, "status_list_invalid")
    assert "signature" in message

    # A re-signed list that says something else is refused for the same reason.
    payload = json.loads(b64url_decode(p))
    payload["credentialSubject"]["statusPurpose"] = "suspension"
    published.write_text(f"{h}.{b64url_encode(json.dumps(payload).encode())}.{s}\n")
    assert_refused_json(world, cred, "status_list_invalid")

    # Nothing published at the URL: unavailable, not invalid.
    published.unlink()
    message = assert_refused_json(world, cred, "status_unavailable")
    assert "HTTP 404" in message


def test_list_signed_by_another_key_refused(world: World) -> None:
    state = create_list(world, "other.json", "/lists/4")
    cred, _ = world.issue(state, "cred-other.jwt")
    other_key = world.work / "other.key"
    ok(run("key", "new", "--unencrypted", "--out", other_key))
    out = world.served / "lists" / "4"
    out.parent.mkdir(parents=True, exist_ok=True)
    ok(run("status-list", "publish", "--status-list", state, "--key", other_key, "--out", out))
    message = assert_refused_json(world, cred, "status_list_invalid")
    assert "not issued by the credential's issuer" in message


# --- usage errors and bad input -----------------------------------------------------------------


def test_revoke_needs_key_and_publish(world: World, revocation: dict[str, Any]) -> None:
    state, cred1, published = revocation["state"], revocation["cred1"], revocation["published"]
    before_state, before_list = state.read_bytes(), published.read_bytes()
    usage(run("revoke", "--status-list", state, cred1), "--key", "--publish")
    usage(run("revoke", "--status-list", state, "--key", world.issuer_key, cred1), "--publish")
    usage(run("revoke", "--status-list", state, "--publish", published, cred1), "--key")
    usage(run("revoke", "--key", world.issuer_key, "--publish", published, cred1), "--status-list")
    usage(run("revoke"), "CREDENTIAL")
    usage(run("unrevoke", "--status-list", state, cred1), "--key")
    # Nothing changed: a refused revoke leaves the state and the published list alone.
    assert state.read_bytes() == before_state
    assert published.read_bytes() == before_list


def test_revoke_with_the_wrong_state_file(world: World, revocation: dict[str, Any]) -> None:
    cred1, published = revocation["cred1"], revocation["published"]
    other = create_list(world, "wrong-url.json", "/lists/9")
    usage(run("revoke", "--status-list", other, "--key", world.issuer_key, "--publish", published, cred1),
          "the credential's list is", world.url("/lists/1"))
    # Same URL, but a fresh state where the credential's index was never allocated.
    fresh = world.work / "fresh.json"
    ok(run("status-list", "create", "--url", world.url("/lists/1"), "--out", fresh))
    before = fresh.read_bytes()
    usage(run("revoke", "--status-list", fresh, "--key", world.issuer_key, "--publish", world.work / "x", cred1),
          "never allocated")
    assert fresh.read_bytes() == before
    assert not (world.work / "x").exists()


def test_revoke_input_errors(world: World, revocation: dict[str, Any]) -> None:
    state, published = revocation["state"], revocation["published"]
    common = ("--status-list", state, "--key", world.issuer_key, "--publish", published)
    usage(run("revoke", *common, world.work / "missing.jwt"), "no such file")
    usage(run("revoke", *common, revocation["cred1"], "--list", "x"), "CREDENTIAL")
    no_status = ok(run("issue", "--key", world.issuer_key, "--subject", world.agent)).stdout.strip()
    usage(run("revoke", *common, no_status), "no credentialStatus")
    junk = world.work / "junk.jwt"
    junk.write_text("not a jwt\n")
    refused(run("revoke", *common, junk), "malformed")
    # The published list cannot be written (its folder would be a file): io_error, state unchanged.
    # (A folder that does not exist yet is made, as for `status-list publish --out www/status/1`.)
    before = state.read_bytes()
    refused(run("revoke", "--status-list", state, "--key", world.issuer_key, "--publish",
                junk / "1", revocation["cred1"]), "io_error")
    assert state.read_bytes() == before


def test_status_list_create_and_show_errors(world: World, revocation: dict[str, Any]) -> None:
    out = world.work / "bad.json"
    usage(run("status-list", "create", "--url", "http://status.test/lists/1", "--out", out), "https")
    usage(run("status-list", "create", "--url", "https://127.0.0.1/lists/1", "--out", out), "IP address")
    usage(run("status-list", "create", "--url", world.url("/l"), "--out", out, "--length", "1000"), "131072")
    usage(run("status-list", "create", "--url", world.url("/l"), "--out", out, "--length", "131073"), "multiple of 8")
    usage(run("status-list", "create", "--url", world.url("/l"), "--out", out, "--purpose", "message"), "--purpose")
    usage(run("status-list", "create", "--url", world.url("/l"), "--out", revocation["state"]), "--force")
    assert not out.exists()
    usage(run("status-list", "show", world.work / "missing.json"), "does not exist")
    corrupt = world.work / "corrupt.json"
    corrupt.write_text('{"format": "something else"}')
    refused(run("status-list", "show", corrupt), "malformed")
    refused(run("status-list", "publish", "--status-list", corrupt, "--key", world.issuer_key), "malformed")
    refused(run("issue", "--key", world.issuer_key, "--subject", world.agent, "--status", "bitstring",
                "--status-list", corrupt), "malformed")
    usage(run("issue", "--key", world.issuer_key, "--subject", world.agent, "--status", "bitstring"), "--status-list")
    text = ok(run("status-list", "show", revocation["state"])).stdout
    assert "url: " + world.url("/lists/1") in text and "allocated: 2" in text


def test_issue_status_guards(world: World, revocation: dict[str, Any]) -> None:
    state = revocation["state"]
    before = state.read_bytes()
    # --status-list typed without --status would give a credential that can never be revoked.
    usage(run("issue", "--key", world.issuer_key, "--subject", world.agent, "--status-list", state),
          "--status-list without --status")
    # A list is signed as the key's DID; a credential naming another issuer could never verify.
    usage(run("issue", "--key", world.issuer_key, "--subject", world.agent, "--issuer", "did:web:issuer.example",
              "--status", "bitstring", "--status-list", state), "--issuer", "leave out --issuer")
    assert state.read_bytes() == before  # no index spent on a refused issue
    # 'status' reads the chain only, and says where a bitstring status is checked.
    usage(run("status", revocation["cred1"]), "no EthrRevocationRegistry2022", "vcgate verify")
    # status-list create into a directory that does not exist: a usage error naming it.
    usage(run("status-list", "create", "--url", world.url("/lists/7"), "--out", world.work / "nodir" / "s.json"),
          "does not exist")


def test_verify_network_option_errors(world: World, revocation: dict[str, Any]) -> None:
    cred = revocation["cred2"]
    usage(run("verify", "--allow-network", "127.0.0.1/8", cred), "--allow-network")  # host bits set
    usage(run("verify", "--allow-network", "not-a-cidr", cred), "--allow-network")
    usage(run("verify", "--ca-bundle", world.work / "missing.pem", cred), "--ca-bundle")
    junk_ca = world.work / "junk.pem"
    junk_ca.write_text("not a certificate\n")
    message = refused(run("verify", "--resolver", "local", "--allow-network", "127.0.0.1/32", "--ca-bundle", junk_ca,
                          cred), "status_unavailable")
    assert "TLS" in message


def test_publish_to_stdout(world: World, revocation: dict[str, Any]) -> None:
    token = ok(run("status-list", "publish", "--status-list", revocation["state"], "--key", world.issuer_key)).stdout
    payload = json.loads(b64url_decode(token.strip().split(".")[1]))
    assert payload["id"] == world.url("/lists/1")
    assert payload["issuer"] == world.issuer
    assert "BitstringStatusListCredential" in payload["type"]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["revoke"], id="revoke"),
        pytest.param(["unrevoke"], id="unrevoke"),
        pytest.param(["status"], id="status"),
        pytest.param(["status-list"], id="status-list"),
        pytest.param(["status-list", "create"], id="status-list-create"),
        pytest.param(["status-list", "publish"], id="status-list-publish"),
        pytest.param(["status-list", "show"], id="status-list-show"),
        pytest.param(["verify"], id="verify"),
        pytest.param(["issue"], id="issue"),
    ],
)
def test_help_has_examples(command: list[str]) -> None:
    text = ok(run(*command, "--help")).stdout
    assert "Examples:" in text
    assert "vcgate " in text.split("Examples:", 1)[1]
