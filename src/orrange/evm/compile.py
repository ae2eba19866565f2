"""Compile the contracts (escrow, vault, test token) into the committed JSON artifacts.

``python -m orrange.evm.compile`` rewrites ``contracts/build/<Name>.json`` for every
``contracts/<Name>.vy``; ``--check`` only compares and exits 1 when an artifact is stale.
Each artifact is ``{"contract", "compiler", "evm_version", "source_sha256", "abi",
"bytecode", "bytecode_runtime"}`` with hex strings ``0x...``; the output is deterministic
(sorted keys), so a fresh compile of unchanged sources reproduces the files byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUILD_DIR", "CONTRACTS", "CONTRACTS_DIR", "compile_all", "compile_contract", "main"]

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
BUILD_DIR = CONTRACTS_DIR / "build"
CONTRACTS: tuple[str, ...] = ("Escrow", "TestToken", "Vault")


def compile_contract(name: str) -> dict[str, Any]:
    """Compile ``contracts/<name>.vy`` with the installed vyper; returns the artifact dict.

    Raises ``FileNotFoundError`` for an unknown contract and vyper's exceptions for a source
    that does not compile.
    """
    import vyper
    from vyper.evm.opcodes import DEFAULT_EVM_VERSION

    path = CONTRACTS_DIR / f"{name}.vy"
    source = path.read_text()
    out = vyper.compile_code(
        source,
        contract_path=f"{name}.vy",
        output_formats=["abi", "bytecode", "bytecode_runtime"],
    )
    return {
        "contract": name,
        "compiler": f"vyper {vyper.__version__}",
        "evm_version": DEFAULT_EVM_VERSION,
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def render(artifact: dict[str, Any]) -> str:
    """The artifact's canonical JSON text (sorted keys, 1-space indent, final newline)."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def compile_all() -> dict[str, str]:
    """Compile every contract in :data:`CONTRACTS`; returns ``{name: canonical JSON text}``."""
    return {name: render(compile_contract(name)) for name in CONTRACTS}


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` verify) the artifacts; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m orrange.evm.compile")
    parser.add_argument("--check", action="store_true", help="only verify; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in compile_all().items():
        target = BUILD_DIR / f"{name}.json"
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
            continue
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    if stale:
        print(f"stale artifacts: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
