"""Shared by the gate, middleware and server tests: parties, a policy, a gate, the protocol by hand."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import NOW, Party, make_party
from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.errors import RevokedError
from vcgate.gate import Gate
from vcgate.policy import Policy
from vcgate.status import StatusChecker, StatusResult

STATUS_TYPE = "TestStatus2024"


def policy_text(audience: str, issuer: str) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        audience: {audience}
        trusted_issuers:
          - did: {issuer}
        rules:
          - name: health
            match:
              methods: [GET]
              paths: [/healthz]
            public: true
          - name: list-models
            match:
              methods: [GET]
              paths: [/v1/models]
            require:
              types: [ModelAccessCredential]
            grants:
              headers:
                X-Vcgate-Subject: $subject
              scopes: [models]
          - name: chat
            match:
              methods: [POST]
              paths: [/v1/chat/completions]
            require:
              types: [ModelAccessCredential]
              claims:
                models:
                  contains: $model
            grants:
              headers:
                X-Vcgate-Subject: $subject
                X-Vcgate-Issuer: $issuer
              scopes: [chat]
        """
    )


class FakeStatus:
    """A status method for ``TestStatus2024`` entries: revoked if the credential id is in ``revoked``."""

    types = (STATUS_TYPE,)

    def __init__(self) -> None:
        self.revoked: set[str] = set()

    def check(self, credential: Any, entry: Any) -> StatusResult:
        if credential.id in self.revoked:
            raise RevokedError("revoked by its issuer")
        return StatusResult(type=STATUS_TYPE, purpose="revocation", source="test", as_of=0.0)


@dataclass
class World:
    audience: str
    issuer: Party
    holder: Party
    gate: Gate
    status: FakeStatus
    clock: Callable[[], float]
    policy_path: Path | None = None
    creds: dict[str, str] = field(default_factory=dict)

    def credential(self, *, issuer: Party | None = None, models: list[str] | None = None, cid: str | None = None,
                   subject: str | None = None) -> str:
        issuer = issuer or self.issuer
        return issue_credential(
            issuer.key,
            issuer=issuer.did,
            kid=issuer.kid,
            subject=subject or self.holder.did,
            types=["ModelAccessCredential"],
            claims={"models": models if models is not None else ["gpt-4o"]},
            valid_from=self.clock() - 3600,
            status={"type": STATUS_TYPE, "id": "test:1"},
            credential_id=cid,
        )

    def presentation(self, nonce: str | None, *, creds: list[str] | None = None, audience: str | None = None,
                     holder: Party | None = None) -> str:
        holder = holder or self.holder
        return create_presentation(
            holder.key,
            holder=holder.did,
            kid=holder.kid,
            credentials=creds if creds is not None else [self.credential()],
            audience=audience or self.audience,
            nonce=nonce,
            issued_at=self.clock(),
        )


def make_world(audience: str = "https://gw.example", *, clock: Callable[[], float] | None = None,
               tmp_path: Path | None = None, **gate_args: Any) -> World:
    clock = clock or (lambda: NOW)
    issuer, holder = make_party(), make_party()
    status = FakeStatus()
    text = policy_text(audience, issuer.did)
    path = None
    if tmp_path is not None:
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        policy = Policy.from_file(path)
    else:
        policy = Policy.from_yaml(text)
    gate = Gate(
        policy=policy,
        policy_path=path,
        verifier=Verifier(clock=clock),
        status=StatusChecker([status]),
        clock=clock,
        **{"gateway_key": make_party().key, **gate_args},
    )
    return World(audience, issuer, holder, gate, status, clock, path)


def real_clock() -> float:
    return time.time()
