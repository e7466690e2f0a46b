"""``vcgate chain`` and ``vcgate registry``: a local development chain and the ERC-5539 registry.

Kept apart from :mod:`vcgate.cli` because it needs the ``chain`` extra (web3, eth-account,
eth-tester): ``vcgate.chain`` is imported inside the commands, so ``vcgate --help`` and the
credential commands work without it.

Settings come from flags or the environment: ``VCGATE_RPC_URL``, ``VCGATE_REGISTRY``,
``VCGATE_ETH_KEY`` (a vcgate key file of alg ES256K).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import click

from .base import EXISTING_FILE, cli, echo_json, info, load_key
from ..errors import ChainError, UnsupportedKeyError
from ..keys import PrivateKey, write_key_file

__all__ = ["chain_group", "registry_group", "connect_rpc", "eth_signer"]

RPC_ENV = "VCGATE_RPC_URL"
REGISTRY_ENV = "VCGATE_REGISTRY"
ETH_KEY_ENV = "VCGATE_ETH_KEY"
CHAIN_INSTALL_HINT = "pip install 'vcgate[chain]'"

rpc_option = click.option(
    "--rpc",
    envvar=RPC_ENV,
    required=True,
    metavar="URL",
    help=f"Ethereum JSON-RPC URL, e.g. from 'vcgate chain dev' [env {RPC_ENV}].",
)
registry_option = click.option(
    "--registry",
    envvar=REGISTRY_ENV,
    required=True,
    metavar="ADDR",
    help=f"Address of the deployed ERC-5539 registry [env {REGISTRY_ENV}].",
)
eth_key_option = click.option(
    "--eth-key",
    envvar=ETH_KEY_ENV,
    required=True,
    type=EXISTING_FILE,
    metavar="FILE",
    help=f"vcgate key file (alg ES256K) that signs and pays for transactions [env {ETH_KEY_ENV}].",
)


def chain_module() -> Any:
    """``vcgate.chain``, or a clear error when the chain extra is not installed."""
    try:
        import vcgate.chain as chain
    except ModuleNotFoundError as exc:
        raise ChainError(f"on-chain features need the chain extra: {CHAIN_INSTALL_HINT} ({exc.name} missing)",
                         hint=CHAIN_INSTALL_HINT) from exc
    return chain


def connect_rpc(rpc: str) -> Any:
    """A :class:`vcgate.chain.Chain` for an http(s) JSON-RPC URL.

    The embedded chain lives only inside one process, so a command that ends cannot use it:
    refuse it here with a pointer to ``vcgate chain dev``.
    """
    if not rpc.startswith(("http://", "https://")):
        raise click.BadParameter("give an http(s) JSON-RPC URL (start one with 'vcgate chain dev')", param_hint="--rpc")
    return chain_module().connect(rpc)


def eth_signer(path: Path) -> tuple[PrivateKey, Any]:
    """Load an ES256K key file; return the key and its eth-account ``LocalAccount``."""
    loaded = load_key(path)
    if loaded.key.alg != "ES256K":
        raise UnsupportedKeyError(f"{path} is an {loaded.key.alg} key; an Ethereum account needs ES256K")
    return loaded.key, chain_module().eth_account_from_key(loaded.key)


# --- vcgate chain ------------------------------------------------------------------------------


@cli.group("chain")
def chain_group() -> None:
    """A local Ethereum development chain (anvil)."""


@chain_group.command("dev")
@click.option("--port", type=click.IntRange(1, 65535), default=8545, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".vcgate-chain/state.json"),
    show_default=True,
    help="File the chain state is loaded from and saved to on exit.",
)
@click.option(
    "--key-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".vcgate-chain/dev.key"),
    show_default=True,
    help="Where to write the funded development account as a vcgate key file (unencrypted).",
)
@click.option("--chain-id", type=int, default=31337, show_default=True, help="Chain id.")
@click.option("--block-time", type=float, default=None, help="Seconds per block [default: mine each transaction].")
@click.option("--json", "as_json", is_flag=True,
              help="Print {rpc, chainId, account, keyFile, state} as one JSON line once the chain is up.")
def chain_dev(port: int, state: Path, key_out: Path, chain_id: int, block_time: float | None, as_json: bool) -> None:
    """Run a local development chain (anvil from npm @foundry-rs/anvil) until Ctrl-C.

    Listens on 127.0.0.1 only. Prints the RPC URL and writes the first funded development
    account as a vcgate ES256K key file -- a publicly known key, for development only. The
    chain state persists in --state across restarts.

    \b
    Examples:
      vcgate chain dev &
      export VCGATE_RPC_URL=http://127.0.0.1:8545 VCGATE_ETH_KEY=.vcgate-chain/dev.key
      vcgate registry deploy
    """
    chain = chain_module()
    node = chain.AnvilNode(port=port, state=state, chain_id=chain_id, block_time=block_time)
    node.start()
    try:
        dev_key = PrivateKey.from_secp256k1_hex(node.dev_private_keys[0])
        key_out.parent.mkdir(parents=True, exist_ok=True)
        write_key_file(key_out, dev_key, passphrase=None, extra={"note": "anvil development account"}, overwrite=True)
        address = chain.eth_address(dev_key.public_key)
        if as_json:
            echo_json({"rpc": node.url, "chainId": chain_id, "account": str(address), "keyFile": str(key_out),
                       "state": str(state)}, compact=True)
        else:
            click.echo(f"rpc: {node.url}")
            click.echo(f"chain id: {chain_id}")
            click.echo(f"dev account: {address}")
            click.echo(f"dev key file: {key_out}")
        info(f"export {RPC_ENV}={node.url} {ETH_KEY_ENV}={key_out}")
        info("the development key is publicly known: never use it on a real network. Ctrl-C stops the chain.")
        stop = False

        def _stop(*_: Any) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        while not stop and node.running:
            time.sleep(0.2)
        if not node.running:
            raise ChainError("anvil exited")
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
        info(f"chain stopped; state saved in {state}")


# --- vcgate registry ----------------------------------------------------------------------------


@cli.group("registry")
def registry_group() -> None:
    """The ERC-5539 revocation registry contract."""


@registry_group.command("deploy")
@rpc_option
@eth_key_option
@click.option("--json", "as_json", is_flag=True, help="Print address, transaction and chain as JSON.")
def registry_deploy(rpc: str, eth_key: Path, as_json: bool) -> None:
    """Deploy the revocation registry and print its address.

    \b
    Examples:
      vcgate registry deploy --rpc http://127.0.0.1:8545 --eth-key .vcgate-chain/dev.key
      export VCGATE_REGISTRY=$(vcgate registry deploy)
    """
    chain = connect_rpc(rpc)
    _key, account = eth_signer(eth_key)
    tx = chain_module().deploy_registry_tx(chain, account)
    if as_json:
        echo_json(
            {
                "registry": tx.contract_address,
                "chainId": chain.chain_id(),
                "tx": tx.tx_hash,
                "block": tx.block_number,
                "gasUsed": tx.gas_used,
            }
        )
        return
    click.echo(tx.contract_address)
    info(f"deployed in block {tx.block_number} (tx {tx.tx_hash}, gas {tx.gas_used}) on chain {chain.chain_id()}")
