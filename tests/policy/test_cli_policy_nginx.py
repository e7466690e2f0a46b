"""`vcgate policy nginx-snippet`: the NGINX lines for every grant header of a policy."""

from __future__ import annotations

from click.testing import CliRunner

from vcgate.cli import cli
from vcgate.policy import Policy

POLICY = """\
version: 1
audience: https://gw.example
trusted_issuers: [{did: "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"}]
rules:
  - name: a
    match: {methods: [GET], paths: [/a]}
    grants: {headers: {X-Vcgate-Subject: $subject, x-vcgate-tier: gold}}
  - name: b
    match: {methods: [GET], paths: [/b]}
    grants: {headers: {X-VCGATE-SUBJECT: $subject, X-Vcgate-Project-Id: p}}
"""


def test_grant_header_names_are_the_union_lower_case():
    assert Policy.from_yaml(POLICY).grant_header_names == ("x-vcgate-project-id", "x-vcgate-subject", "x-vcgate-tier")


def test_snippet_sets_and_overwrites_each_grant(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    res = CliRunner().invoke(cli, ["policy", "nginx-snippet", str(path)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()[1:]
    assert lines == [
        "auth_request_set $vcgate_project_id $upstream_http_x_vcgate_project_id;",
        "auth_request_set $vcgate_subject $upstream_http_x_vcgate_subject;",
        "auth_request_set $vcgate_tier $upstream_http_x_vcgate_tier;",
        "proxy_set_header X-Vcgate-Project-Id $vcgate_project_id;",
        "proxy_set_header X-Vcgate-Subject $vcgate_subject;",
        "proxy_set_header X-Vcgate-Tier $vcgate_tier;",
    ]


def test_snippet_of_a_broken_policy_names_the_problem(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules: [\n")
    res = CliRunner().invoke(cli, ["policy", "nginx-snippet", str(path)])
    assert res.exit_code == 1 and "policy.yaml" in res.output
