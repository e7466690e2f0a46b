"""deploy/observability: the alert rules and the Grafana dashboard, checked with promtool.

* ``promtool check rules`` on alerts.yml and ``promtool test rules`` on its unit tests
  (alerts_test.yml), where every alert must fire at least once;
* the dashboard's structure, and every PromQL expression in it parsed by promtool (each one
  becomes a recording rule of a generated file: promtool has no "parse this expression");
* every metric the rules and the dashboard name is one a real ``vcgate serve`` exports (with
  Redis stores and a revocation mirror on a dev chain, so every family is there): a renamed
  metric fails here.

promtool comes from Debian's ``prometheus`` package (scripts/system-deps.sh).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import require_real

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
ALERTS = OBS / "alerts.yml"
ALERT_TESTS = OBS / "alerts_test.yml"
DASHBOARD = OBS / "grafana-dashboard.json"

#: Series Prometheus itself makes, not vcgate.
PROMETHEUS_OWN = {"up"}
# A metric name where one stands alone (not inside a recording rule's `level:metric:op` name).
_METRIC = re.compile(r"(?<![\w:])(vcgate_[a-z0-9_]+|up)(?![\w:(])")
# Grafana's variables, with values that make the expression plain PromQL.
_GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$job": ".+", "$instance": ".+"}


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        require_real("promtool", "apt-get install prometheus (make system-deps installs it)")
    return exe  # type: ignore[return-value]


def run_promtool(*args: str, cwd: Path = OBS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def alert_names() -> set[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def dashboard_panels() -> list[dict]:
    panels = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return panels


def dashboard_exprs() -> list[str]:
    out = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in _GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append(expr)
    return out


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def exported_names(exposition: str) -> set[str]:
    """Every series name a text exposition can carry: its samples, and for each family its
    type's names (a family with no sample yet, e.g. limits without a limit, still counts)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            base = name.removesuffix("_total")
            names.add(name)
            if kind == "counter":
                names.update({base + "_total", base + "_created"})
            elif kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count", name + "_created"})
            elif kind == "info":
                names.add(name + "_info")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# --- promtool on the rules -------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check():
    r = run_promtool("check", "rules", str(ALERTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in r.stdout


def test_alert_rules_pass_their_unit_tests():
    r = run_promtool("test", "rules", str(ALERT_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_fires_in_some_unit_test():
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alert_names() - fired == set(), "alerts without a unit test that makes them fire"
    assert len(alert_names()) >= 12


def test_promtool_catches_a_broken_expression(tmp_path):
    # The dashboard check below relies on this: promtool check rules parses every expr.
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "x:y", "expr": "sum(rate(vcgate_decisions_total[5m])"}]}]}))
    r = run_promtool("check", "rules", str(bad), cwd=tmp_path)
    assert r.returncode != 0 and "parse error" in (r.stdout + r.stderr)


# --- the dashboard ---------------------------------------------------------------------------------


def test_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    queried = [p for p in panels if p["type"] not in ("row", "text")]
    assert len(queried) >= 12
    for panel in queried:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"], panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("outcome", "code", "quantile", "mirror", "policy", "store"):
        assert topic in titles, topic
    notes = " ".join(p.get("options", {}).get("content", "") for p in panels if p["type"] == "text")
    assert "--workers" in notes, "the dashboard says what per-worker metrics mean"


def test_dashboard_expressions_parse(tmp_path):
    exprs = dashboard_exprs()
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in r.stdout


# --- metric names: what the rules and the dashboard use is what vcgate serve exports ------------


def test_metric_name_extraction_sees_names_not_recording_rules():
    expr = 'job:vcgate_refusal_ratio:rate5m > 0 and rate(vcgate_decisions_total{code="x"}[5m]) > 0 or up == 0'
    assert metric_names([expr]) == {"vcgate_decisions_total", "up"}
    assert exported_names("# TYPE vcgate_store_errors_total counter\n") >= {"vcgate_store_errors_total"}


@pytest.fixture
def registry_on_anvil():
    """A real node (anvil, from npm) with the ERC-5539 registry deployed: (RPC URL, address)."""
    try:
        from vcgate.chain import AnvilNode, connect, deploy_registry, eth_account_from_key, find_anvil
    except ModuleNotFoundError:
        require_real("the chain extra", "pip install -e '.[chain]' (make test installs it)")
    if find_anvil() is None:
        require_real("anvil", "npm ci --prefix tools/chain (make test installs it)")
    from vcgate.keys import PrivateKey

    with AnvilNode() as node:
        chain = connect(node.url, timeout=10)
        owner = eth_account_from_key(PrivateKey.generate("ES256K"))
        chain.fund(owner.address, 10**18)
        yield node.url, deploy_registry(chain, owner)


@pytest.mark.integration
def test_every_metric_in_rules_and_dashboard_is_exported_by_vcgate_serve(tmp_path, registry_on_anvil):
    import requests

    from tests.integration.gateway_support import AuthService, gateway_world
    from tests.integration.test_redis_store import _start_redis

    rpc, registry = registry_on_anvil
    used_rules, used_dashboard = metric_names(rule_exprs()), metric_names(dashboard_exprs())
    assert len(used_rules) >= 10 and len(used_dashboard) >= 10  # the extraction is not vacuous

    world = gateway_world(tmp_path, "https://gw.example")
    redis = _start_redis(tmp_path)
    try:
        with AuthService(world.policy, args=("--workers", "1", "--redis", redis.url, "--rpc", rpc, "--registry", registry)) as service:
            headers = {"X-Original-Method": "GET", "X-Original-URI": "/v1/models", "Host": "gw.example"}
            assert requests.get(service.url + "/nginx/auth", headers=headers, timeout=10).status_code == 401
            text = service.metrics()
    finally:
        redis.stop()
    exported = exported_names(text)
    assert "vcgate_mirror_healthy" in exported and "vcgate_store_errors_total" in exported  # every family is there
    missing_rules = used_rules - exported - PROMETHEUS_OWN
    missing_dashboard = used_dashboard - exported - PROMETHEUS_OWN
    assert not missing_rules, f"alerts.yml names metrics vcgate serve does not export: {sorted(missing_rules)}"
    assert not missing_dashboard, f"the dashboard names metrics vcgate serve does not export: {sorted(missing_dashboard)}"
