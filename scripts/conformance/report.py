#!/usr/bin/env python3
"""Summarise the W3C suite reports of scripts/conformance/run.sh and compare with expected.json.

Prints ``SUITE: P passed, F failed`` per suite run (pending tests in brackets), then every
failing *positive* test: one the null implementation that refuses everything does not pass
(the kit's baseline.txt), so its failure is a missing capability, not a refusal. Tests known to
be wrong in the suite itself are marked (their reasons are in expected.json and
docs/conformance.md). Exit 1 when a test listed as passing in expected.json fails (or is
missing); ``--update`` rewrites the list from this run instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RUNS = (
    "did-key",
    "vc-di-eddsa-rdfc",
    "vc-di-eddsa-jcs",
    "vc-data-model-2.0-di",
    "vc-data-model-2.0-jose",
    "vc-bitstring-status-list",
    "vc-jose-cose",
)
_IMPL = re.compile(r" (vcgate|null-reject|null-accept|null-echo) ")


def _title(test: dict) -> str:
    return _IMPL.sub(" * ", test.get("fullTitle", test.get("title", "")), count=1)


def _negative_tests(baseline: Path) -> set[str]:
    """Titles the refuse-everything null implementation passes: negative tests."""
    out: set[str] = set()
    section = ""
    for line in baseline.read_text().splitlines():
        if ": tests=" in line:
            section = line.split(":", 1)[0]
        elif line.startswith("  PASS ") and "reject" in section:
            out.add(_IMPL.sub(" * ", line[len("  PASS "):], count=1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=Path, required=True)
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--expected", type=Path, required=True)
    ap.add_argument("--update", action="store_true")
    args = ap.parse_args()
    negative = _negative_tests(args.baseline)
    expected = json.loads(args.expected.read_text()) if args.expected.exists() else {"wrong_in_suite": {}, "passing": {}}
    wrong = expected.get("wrong_in_suite", {})
    passing_now: dict[str, list[str]] = {}
    regressions: list[str] = []
    positive_failures: list[str] = []
    for run in RUNS:
        path = args.reports / f"{run}.json"
        if not path.exists():
            print(f"{run}: no report (see {args.reports}/{run}.log)")
            regressions.extend(f"{run}: {t}" for t in expected.get("passing", {}).get(run, []))
            continue
        report = json.loads(path.read_text())
        passes = sorted({_title(t) for t in report.get("passes", [])})
        failures = [t for t in report.get("failures", [])]
        pending = len(report.get("pending", []))
        passing_now[run] = passes
        print(f"{run}: {len(passes)} passed, {len(failures)} failed" + (f" ({pending} pending)" if pending else ""))
        for test in failures:
            title = _title(test)
            if title not in negative:
                note = f"  [wrong in the suite: {wrong[title]}]" if title in wrong else ""
                message = ((test.get("err") or {}).get("message") or "").splitlines()[:1]
                positive_failures.append(f"  {run}: {title}{note}" + (f"\n      -> {message[0][:200]}" if message else ""))
        lost = set(expected.get("passing", {}).get(run, [])) - set(passes)
        regressions.extend(f"{run}: {t}" for t in sorted(lost))
    if positive_failures:
        print("failing positive tests:")
        print("\n".join(positive_failures))
    if args.update:
        expected["passing"] = passing_now
        args.expected.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        print(f"updated {args.expected}")
        return 0
    if regressions:
        print(f"REGRESSIONS: {len(regressions)} test(s) that passed before fail now:")
        print("\n".join(f"  {r}" for r in regressions))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
