"""The ledger fold: balances, per-order holds and source cursors from entries (docs/funds.md).

:meth:`Ledger.apply` is the only mutation. It is all-or-nothing: an entry that breaks a rule
raises :class:`LedgerError` and changes nothing.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from orrange.ledger.entries import FAUCET, FEES, LOSS, P2P_PREFIX, VAULT, Entry, EntryKind

__all__ = ["Audit", "Balance", "Ledger", "LedgerError", "LedgerState"]

#: Accounts of the outside world whose ``available`` may be negative.
UNBOUNDED: Final = frozenset({VAULT, FAUCET, LOSS})
_K = EntryKind
#: Kinds that move funds across the chain boundary: applied through the path that also keeps
#: the flow figures of :meth:`Ledger.audit`.
_FLOW_KINDS: Final = frozenset(
    {
        _K.DEPOSIT,
        _K.DEPOSIT_REVERSED,
        _K.FAUCET,
        _K.WITHDRAWAL_CONFIRMED,
        _K.WITHDRAWAL_REQUESTED,
        _K.WITHDRAWAL_RETURNED,
    }
)


class LedgerError(ValueError):
    """An entry broke a ledger rule (postings of an asset not summing to zero, a balance or a
    hold going negative, a hold settled by another account); the ledger is unchanged."""


class Balance(NamedTuple):
    """``available`` and ``held`` base units of one (account, asset)."""

    available: int
    held: int


class Audit(msgspec.Struct, frozen=True, kw_only=True):
    """The conservation identity of one asset, in base units.

    ``users_available + users_held + fees + p2p + loss == deposits - reversed - withdrawals +
    faucet``, with ``-vault == deposits - reversed - withdrawals`` and ``-faucet_account ==
    faucet``; ``other`` is the balance of any other system account (must be 0).

    Attributes:
        fees, p2p, loss: balances of ``@fees``, all ``@p2p:*`` and ``@loss`` (loss <= 0).
        deposits, reversed, withdrawals, faucet: confirmed deposits, their reorg reversals,
            confirmed withdrawals and faucet credits, summed from the entries of those kinds.
        vault, faucet_account: the ``@vault`` and ``@faucet`` balances.
        ok: every identity holds and no user balance is negative.
    """

    asset: str
    users_available: int
    users_held: int
    fees: int
    p2p: int
    loss: int
    deposits: int
    reversed: int
    withdrawals: int
    faucet: int
    vault: int
    faucet_account: int
    other: int
    ok: bool


class LedgerState(msgspec.Struct, array_like=True):
    """A ledger's whole state (:meth:`Ledger.state`): balances ``(account, asset, available,
    held)``, holds ``(ref, account, asset, amount)``, cursors ``(source, seq, n)`` and flows
    ``(asset, deposits, reversed, withdrawals, faucet)``, each sorted."""

    balances: list[tuple[str, str, int, int]]
    holds: list[tuple[str, str, str, int]]
    cursors: list[tuple[str, int, int]]
    flows: list[tuple[str, int, int, int, int]]


def _fail(e: Entry, why: str) -> LedgerError:
    return LedgerError(f"entry {e.id} ({e.kind}): {why}")


class Ledger:
    """Balances per (account, asset), holds per ``ref`` and the last ``(seq, n)`` per source.

    Not thread-safe; a deterministic function of the entries applied (in any split between
    :meth:`snapshot` / :meth:`restore` and :meth:`apply`).
    """

    __slots__ = ("_accounts", "_bal", "_cursor", "_flows", "_holds")

    def __init__(self) -> None:
        self._bal: dict[tuple[str, str], list[int]] = {}
        self._accounts: dict[str, set[str]] = {}
        self._holds: dict[str, tuple[str, str, int]] = {}
        self._cursor: dict[str, list[int]] = {}  # source -> [seq, n], updated in place
        # per asset: deposits, reversed, withdrawals, faucet
        self._flows: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ apply
    def apply(self, e: Entry) -> bool:
        """Apply ``e`` once. Returns False (nothing done) when ``(e.seq, e.n)`` is at or below
        the cursor of ``e.source``, True when applied.

        A posting with a ``held`` delta in an entry with a ``ref`` moves that ref's hold: a
        positive delta opens or grows it, a negative one settles against it.

        Raises:
            LedgerError: the postings of an asset do not sum to zero, a balance of an account
                other than ``@vault``, ``@faucet`` and ``@loss`` would go negative, or a
                ref's hold would go negative or be settled by another account or asset.
        """
        cur = self._cursor.get(e.source)
        seq = e.seq
        if cur is None:
            cur = self._cursor[e.source] = [0, -1]
        elif seq < cur[0] or (seq == cur[0] and e.n <= cur[1]):
            return False
        ps = e.postings
        if e.kind in _FLOW_KINDS:
            self._apply_many(e)
            self._flow(e)
        elif len(ps) == 1:
            p = ps[0]
            da = p.available
            dh = p.held
            if da + dh:
                raise _fail(e, f"{p.asset} postings sum to {da + dh}, not 0")
            key = (p.account, p.asset)
            b = self._bal.get(key)
            if b is None:
                a, h = da, dh
            else:
                a = b[0] + da
                h = b[1] + dh
            if (a < 0 or h < 0) and p.account not in UNBOUNDED:
                raise _fail(e, f"{p.account} {p.asset} would be {a} available, {h} held")
            if dh and e.ref:
                self._hold_move(e, e.ref, p.account, p.asset, dh)
            if b is None:
                self._new(key, a, h)
            else:
                b[0] = a
                b[1] = h
        elif len(ps) == 2:
            p, q = ps
            asset = p.asset
            pacc = p.account
            qacc = q.account
            if q.asset != asset or pacc == qacc:
                self._apply_many(e)
            else:
                pa, ph, qa, qh = p.available, p.held, q.available, q.held
                if pa + ph + qa + qh:
                    raise _fail(e, f"{asset} postings sum to {pa + ph + qa + qh}, not 0")
                bal = self._bal
                kp = (pacc, asset)
                kq = (qacc, asset)
                bp = bal.get(kp)
                bq = bal.get(kq)
                if bp is not None:
                    pa += bp[0]
                    ph += bp[1]
                if bq is not None:
                    qa += bq[0]
                    qh += bq[1]
                if (pa < 0 or ph < 0) and pacc not in UNBOUNDED:
                    raise _fail(e, f"{pacc} {asset} would be {pa} available, {ph} held")
                if (qa < 0 or qh < 0) and qacc not in UNBOUNDED:
                    raise _fail(e, f"{qacc} {asset} would be {qa} available, {qh} held")
                ref = e.ref
                if ref and (p.held or q.held):
                    if p.held and q.held:
                        self._apply_many(e)
                        cur[0] = seq
                        cur[1] = e.n
                        return True
                    account, dh = (pacc, p.held) if p.held else (qacc, q.held)
                    hold = self._holds.get(ref)
                    if hold is None or hold[0] != account or hold[1] != asset:
                        self._hold_move(e, ref, account, asset, dh)  # opens or refuses
                    else:
                        amount = hold[2] + dh
                        if amount > 0:
                            self._holds[ref] = (account, asset, amount)
                        elif amount == 0:
                            del self._holds[ref]
                        else:
                            self._hold_move(e, ref, account, asset, dh)  # refuses
                if bp is None:
                    self._new(kp, pa, ph)
                else:
                    bp[0] = pa
                    bp[1] = ph
                if bq is None:
                    self._new(kq, qa, qh)
                else:
                    bq[0] = qa
                    bq[1] = qh
        elif ps:
            self._apply_many(e)
        cur[0] = seq
        cur[1] = e.n
        return True

    def _new(self, key: tuple[str, str], a: int, h: int) -> None:
        self._bal[key] = [a, h]
        acc = self._accounts.get(key[0])
        if acc is None:
            self._accounts[key[0]] = {key[1]}
        else:
            acc.add(key[1])

    def _hold_move(self, e: Entry, ref: str, account: str, asset: str, dh: int) -> None:
        """Check and apply a held delta to ``ref``'s hold (called after every other check of
        a one-hold entry, so a failure here still leaves the ledger unchanged)."""
        hold = self._holds.get(ref)
        if hold is None:
            if dh < 0:
                raise _fail(e, f"releases {-dh} {asset} from {ref}, which holds nothing")
            self._holds[ref] = (account, asset, dh)
            return
        if hold[0] != account or hold[1] != asset:
            raise _fail(e, f"{ref} is held by {hold[0]} in {hold[1]}, not {account} in {asset}")
        amount = hold[2] + dh
        if amount < 0:
            raise _fail(e, f"releases {-dh} {asset} from {ref}, which holds {hold[2]}")
        if amount:
            self._holds[ref] = (account, asset, amount)
        else:
            del self._holds[ref]

    def _apply_many(self, e: Entry) -> None:
        """The general path: any number of postings and assets, checked before any write."""
        sums: dict[str, int] = {}
        new: dict[tuple[str, str], list[int]] = {}
        held: dict[tuple[str, str], int] = {}
        bal = self._bal
        for p in e.postings:
            sums[p.asset] = sums.get(p.asset, 0) + p.available + p.held
            key = (p.account, p.asset)
            b = new.get(key)
            if b is None:
                old = bal.get(key)
                b = new[key] = [0, 0] if old is None else [old[0], old[1]]
            b[0] += p.available
            b[1] += p.held
            if p.held:
                held[key] = held.get(key, 0) + p.held
        for asset, s in sums.items():
            if s:
                raise _fail(e, f"{asset} postings sum to {s}, not 0")
        for (account, asset), (a, h) in new.items():
            if (a < 0 or h < 0) and account not in UNBOUNDED:
                raise _fail(e, f"{account} {asset} would be {a} available, {h} held")
        ref = e.ref
        moves = [(k, d) for k, d in held.items() if d]
        if ref and moves:
            if len(moves) > 1:
                raise _fail(e, f"moves the hold {ref} of {len(moves)} accounts or assets")
            (account, asset), d = moves[0]
            self._hold_move(e, ref, account, asset, d)
        for key, (a, h) in new.items():
            b = bal.get(key)
            if b is None:
                self._new(key, a, h)
            else:
                b[0] = a
                b[1] = h

    def _flow(self, e: Entry) -> None:
        kind = e.kind
        for p in e.postings:
            if p.account == VAULT:
                i = (
                    0
                    if kind is _K.DEPOSIT
                    else 1
                    if kind is _K.DEPOSIT_REVERSED
                    else 2
                    if kind is _K.WITHDRAWAL_CONFIRMED
                    else -1
                )
            elif p.account == FAUCET:
                i = 3
            else:
                continue
            if i < 0:
                continue
            f = self._flows.get(p.asset)
            if f is None:
                f = self._flows[p.asset] = [0, 0, 0, 0]
            # the outside world's side: a deposit or credit is negative, a return positive
            f[i] += p.available if i in (1, 2) else -p.available

    # ---------------------------------------------------------------- queries
    def balance(self, account: str, asset: str) -> Balance:
        """``account``'s balance of ``asset`` (base units; ``(0, 0)`` when never touched)."""
        b = self._bal.get((account, asset))
        return Balance(0, 0) if b is None else Balance(b[0], b[1])

    def balances(self, account: str) -> dict[str, Balance]:
        """Every asset ``account`` has touched, by code."""
        return {a: self.balance(account, a) for a in sorted(self._accounts.get(account, ()))}

    def accounts(self) -> list[str]:
        """Every account that has a balance, sorted."""
        return sorted(self._accounts)

    def totals(self, asset: str) -> Balance:
        """The users' (non-system accounts') ``available`` and ``held`` of ``asset``."""
        a = h = 0
        for (account, code), b in self._bal.items():
            if code == asset and not account.startswith("@"):
                a += b[0]
                h += b[1]
        return Balance(a, h)

    def hold(self, ref: str) -> tuple[str, str, int] | None:
        """``(account, asset, amount)`` held for ``ref`` (an order key or a withdrawal id),
        or None when nothing is held for it."""
        return self._holds.get(ref)

    def holds(self) -> dict[str, tuple[str, str, int]]:
        """Every open hold by ref."""
        return dict(self._holds)

    def cursor(self, source: str) -> tuple[int, int] | None:
        """The last ``(seq, n)`` applied from ``source``, or None."""
        c = self._cursor.get(source)
        return None if c is None or c[1] < 0 else (c[0], c[1])

    def assets(self) -> list[str]:
        """Every asset with a balance, sorted."""
        return sorted({k[1] for k in self._bal})

    def audit(self, asset: str) -> Audit:
        """The figures of ``asset`` and whether the identities hold (see :class:`Audit`)."""
        ua = uh = fees = p2p = loss = vault = faucet_acc = other = 0
        negative = False
        for (account, code), (a, h) in self._bal.items():
            if code != asset:
                continue
            if not account.startswith("@"):
                ua += a
                uh += h
                negative = negative or a < 0 or h < 0
            elif account == FEES:
                fees += a + h
            elif account.startswith(P2P_PREFIX):
                p2p += a + h
            elif account == LOSS:
                loss += a + h
            elif account == VAULT:
                vault += a + h
            elif account == FAUCET:
                faucet_acc += a + h
            else:
                other += a + h
        dep, rev, wd, fct = self._flows.get(asset, (0, 0, 0, 0))
        ok = (
            not negative
            and fees >= 0
            and p2p >= 0
            and loss <= 0
            and other == 0
            and ua + uh + fees + p2p + loss == dep - rev - wd + fct
            and -vault == dep - rev - wd
            and -faucet_acc == fct
        )
        return Audit(
            asset=asset,
            users_available=ua,
            users_held=uh,
            fees=fees,
            p2p=p2p,
            loss=loss,
            deposits=dep,
            reversed=rev,
            withdrawals=wd,
            faucet=fct,
            vault=vault,
            faucet_account=faucet_acc,
            other=other,
            ok=ok,
        )

    # -------------------------------------------------------------- snapshots
    def state(self) -> LedgerState:
        """The whole state as a :class:`LedgerState` (what :meth:`snapshot` encodes)."""
        return LedgerState(
            sorted((k[0], k[1], b[0], b[1]) for k, b in self._bal.items()),
            sorted((r, *h) for r, h in self._holds.items()),
            sorted((s, c[0], c[1]) for s, c in self._cursor.items() if c[1] >= 0),
            sorted((a, f[0], f[1], f[2], f[3]) for a, f in self._flows.items()),
        )

    def snapshot(self) -> bytes:
        """The whole ledger as msgpack bytes (sorted: equal ledgers give equal bytes)."""
        return msgspec.msgpack.encode(self.state())

    @classmethod
    def from_state(cls, st: LedgerState) -> Ledger:
        """A ledger from a :class:`LedgerState`."""
        led = cls()
        for account, asset, a, h in st.balances:
            led._new((account, asset), a, h)
        led._holds = {r: (acc, asset, amt) for r, acc, asset, amt in st.holds}
        led._cursor = {s: [seq, n] for s, seq, n in st.cursors}
        led._flows = {a: [d, r, w, f] for a, d, r, w, f in st.flows}
        return led

    @classmethod
    def restore(cls, data: bytes) -> Ledger:
        """A ledger from :meth:`snapshot` bytes.

        Raises:
            msgspec.DecodeError: the bytes are not a ledger snapshot.
        """
        return cls.from_state(msgspec.msgpack.decode(data, type=LedgerState))
