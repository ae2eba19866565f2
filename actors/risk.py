"""The risk process: ``orrange actor risk [--symbols ...] [--max-open-orders N] ...``.

Its limits come from the settings TOML's ``[risk]`` table, the ``ORRANGE_RISK_*`` variables
(:func:`load_risk_limits`) and the command line, in rising priority.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors._args import actor_parser, actor_setup, markets_arg, symbols_arg
from orrange.engine.risk import FundsOptions, RiskActor
from orrange.infra.run import DEV_VAULT_ADDRESS, DEV_VAULT_SIGNER_KEY
from orrange.ledger import load_assets
from orrange.risk import RiskLimits
from orrange.runtime import run_actor
from orrange.settings import SettingsError, config_file

__all__ = ["funds_options", "load_risk_limits", "main"]

#: The development chain's id (anvil's default).
DEV_CHAIN_ID = 31337


def load_risk_limits(
    config_path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> RiskLimits:
    """Risk limits from the settings TOML's ``[risk]`` table and ``ORRANGE_RISK_*`` variables.

    The table holds the fields of :class:`~orrange.risk.RiskLimits` (``max_open_orders``,
    ``rate_per_s``, ``burst``, ``exempt_users`` as a list of user ids); the variables
    ``ORRANGE_RISK_MAX_OPEN_ORDERS``, ``ORRANGE_RISK_RATE_PER_S``, ``ORRANGE_RISK_BURST`` and
    ``ORRANGE_RISK_EXEMPT_USERS`` (comma-separated) override it. Missing values keep the
    defaults.

    Args:
        config_path: the TOML file; None means ``config_file("orrange.toml")``.
        env: environment mapping; None means ``os.environ``.

    Raises:
        SettingsError: unreadable TOML or a value of the wrong type or not positive.
    """
    env = os.environ if env is None else env
    path = Path(config_path) if config_path is not None else config_file("orrange.toml", env)
    values: dict[str, Any] = {}
    try:
        with path.open("rb") as fh:
            table = tomllib.load(fh).get("risk", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    values.update({k: v for k, v in table.items() if k in RiskLimits.__struct_fields__})
    for name in ("max_open_orders", "rate_per_s", "burst"):
        raw = env.get(f"ORRANGE_RISK_{name.upper()}")
        if raw is not None:
            values[name] = raw
    exempt = env.get("ORRANGE_RISK_EXEMPT_USERS")
    if exempt is not None:
        values["exempt_users"] = [u.strip() for u in exempt.split(",") if u.strip()]
    try:
        return msgspec.convert(values, RiskLimits, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise SettingsError(f"invalid risk limits: {exc}") from exc


def funds_options(assets_path: str | None, env: Mapping[str, str] | None = None) -> FundsOptions:
    """The funds risk keeps: the assets of ``assets_path`` (default
    ``config_file("assets.toml")``); the vault ``ORRANGE_VAULT_ADDRESS``, its chain
    ``ORRANGE_CHAIN_ID`` and signer key ``ORRANGE_VAULT_SIGNER_KEY`` (with ``ORRANGE_ENV=dev``
    the development chain's: :data:`~orrange.infra.run.DEV_VAULT_ADDRESS`, chain 31337,
    :data:`~orrange.infra.run.DEV_VAULT_SIGNER_KEY`). Without a vault or a key withdrawals
    are refused; deposits, holds and fills work regardless.

    Raises:
        SettingsError: the assets file is missing or invalid, or ORRANGE_CHAIN_ID is not an
            integer.
    """
    env = os.environ if env is None else env
    path = assets_path or config_file("assets.toml")
    try:
        with open(path, encoding="utf-8") as fh:
            assets = load_assets(fh.read())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"assets {path}: {exc}") from exc
    dev = env.get("ORRANGE_ENV", "").lower() == "dev"
    try:
        chain_id = int(env.get("ORRANGE_CHAIN_ID") or (DEV_CHAIN_ID if dev else 0))
    except ValueError as exc:
        raise SettingsError(f"ORRANGE_CHAIN_ID: {exc}") from exc
    return FundsOptions(
        assets=assets,
        vault_address=env.get("ORRANGE_VAULT_ADDRESS") or (DEV_VAULT_ADDRESS if dev else ""),
        chain_id=chain_id,
        signer_key=env.get("ORRANGE_VAULT_SIGNER_KEY") or (DEV_VAULT_SIGNER_KEY if dev else ""),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the risk actor until SIGTERM/SIGINT.

    Options: the shared ones (``--config``, whose ``[risk]`` table gives the limits,
    ``--nats-url``, ``--markets``, ``--name``, ``--metrics-port``), ``--symbols``
    (comma-separated; default every market) and overrides of the limits:
    ``--max-open-orders`` (default 100), ``--rate`` (submits and amends per second per user,
    default 50), ``--burst`` (default 100), ``--exempt-users`` (comma-separated), and
    ``--assets`` (the vault assets, :func:`funds_options`).

    Returns the exit code: 0 after a clean stop, 2 for bad arguments or configuration.
    """
    p = actor_parser("risk", "run the risk actor", database=False, markets=True)
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: all)")
    p.add_argument("--max-open-orders", type=int, default=None, help="open orders per user")
    p.add_argument("--rate", type=int, default=None, help="submits and amends per s per user")
    p.add_argument("--burst", type=int, default=None, help="rate bucket size per user")
    p.add_argument("--exempt-users", default=None, help="comma-separated users without limits")
    p.add_argument("--assets", default=None, help="vault assets (default: assets.toml)")
    args = p.parse_args(argv)
    _, config = actor_setup(p, args)
    markets = markets_arg(p, args)
    symbols = symbols_arg(p, args.symbols, markets)
    try:
        limits = load_risk_limits(args.config)
        overrides: dict[str, Any] = {
            k: v
            for k, v in (
                ("max_open_orders", args.max_open_orders),
                ("rate_per_s", args.rate),
                ("burst", args.burst),
            )
            if v is not None
        }
        if args.exempt_users is not None:
            overrides["exempt_users"] = frozenset(
                u.strip() for u in args.exempt_users.split(",") if u.strip()
            )
        limits = msgspec.structs.replace(limits, **overrides)
        funds = funds_options(args.assets)
        actor = RiskActor(config, markets, limits=limits, symbols=symbols, funds=funds)
    except ValueError as exc:  # SettingsError too
        p.error(str(exc))
    actor.log.info(
        "risk limits",
        max_open_orders=limits.max_open_orders,
        rate_per_s=limits.rate_per_s,
        burst=limits.burst,
        exempt_users=sorted(limits.exempt_users),
    )
    return run_actor(actor)


if __name__ == "__main__":
    sys.exit(main())
