"""An AI agent calling a vcgate-protected, OpenAI-compatible model API.

    export VCGATE_PASSPHRASE=...                       # the agent key's passphrase
    python examples/agent.py --url http://127.0.0.1:8000 --key agent.key --credential agent.vc.jwt \\
        --model llama-3-70b "Say hello"

The only vcgate-specific line is the ``http_client=``: the holder's httpx auth answers the
gateway's challenge with a presentation, trades it for a DPoP-bound token, and signs a proof
for every call. Everything else is the plain OpenAI SDK.
"""

from __future__ import annotations

import argparse
import sys

import httpx
import openai

from vcgate.client import Holder
from vcgate.errors import VCGateError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the gateway's base URL (its policy audience)")
    ap.add_argument("--key", required=True, help="the agent's vcgate key file")
    ap.add_argument("--credential", action="append", required=True, help="a credential JWT file (repeatable)")
    ap.add_argument("--model", default="llama-3-70b")
    ap.add_argument("--stream", action="store_true", help="stream the answer")
    ap.add_argument("prompt", nargs="?", default="Hello from an agent with a verifiable credential.")
    args = ap.parse_args(argv)

    try:
        holder = Holder.from_key_file(args.key, credentials=args.credential)
    except VCGateError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a --credential that is neither a readable file nor a JWT
        print(f"error: {exc}: check --credential (the file 'vcgate issue --out' wrote)", file=sys.stderr)
        return 1
    client = openai.OpenAI(
        base_url=args.url.rstrip("/") + "/v1",
        api_key="unused",  # the holder's auth replaces the SDK's Bearer header
        http_client=httpx.Client(auth=holder.httpx_auth()),
        max_retries=0,
    )
    messages = [{"role": "user", "content": args.prompt}]
    try:
        if args.stream:
            for chunk in client.chat.completions.create(model=args.model, messages=messages, stream=True):
                print(chunk.choices[0].delta.content or "", end="", flush=True)
            print()
        else:
            reply = client.chat.completions.create(model=args.model, messages=messages)
            print(reply.choices[0].message.content)
    except VCGateError as exc:  # the challenge could not be answered (e.g. no fitting credential)
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except openai.APIConnectionError:
        print(f"error: cannot reach {args.url}: is the gateway running there? (check --url)", file=sys.stderr)
        return 1
    except openai.APIStatusError as exc:
        try:
            body = exc.response.json()
            print(f"refused: {exc.status_code} {body.get('error')}: {body.get('message')}", file=sys.stderr)
        except ValueError:
            print(f"refused: {exc.status_code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
