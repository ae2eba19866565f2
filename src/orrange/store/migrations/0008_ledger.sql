-- Funds (docs/funds.md): risk's ledger entries as the persister receives them on LEDGER, the
-- balances they add up to, and withdrawals with their authorization. Amounts are integers of
-- the asset's base units (numeric: 18-decimal tokens exceed bigint), times ms UTC.

CREATE TABLE ledger_entries (
    id      text    PRIMARY KEY,           -- <source>:<seq>:<n>
    kind    text    NOT NULL,
    source  text    NOT NULL,
    seq     bigint  NOT NULL,
    n       integer NOT NULL,
    ts      bigint  NOT NULL,
    ref     text    NOT NULL DEFAULT '',
    detail  text    NOT NULL DEFAULT ''
);

-- One row per posting of an entry: the change of one (account, asset) balance.
CREATE TABLE ledger_postings (
    entry_id  text    NOT NULL REFERENCES ledger_entries (id),
    idx       integer NOT NULL,
    account   text    NOT NULL,
    asset     text    NOT NULL,
    available numeric(78, 0) NOT NULL,
    held      numeric(78, 0) NOT NULL,
    ts        bigint  NOT NULL,
    kind      text    NOT NULL,
    PRIMARY KEY (entry_id, idx)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account, ts DESC, entry_id DESC, idx);

CREATE TABLE balances (
    account   text    NOT NULL,
    asset     text    NOT NULL,
    available numeric(78, 0) NOT NULL DEFAULT 0,
    held      numeric(78, 0) NOT NULL DEFAULT 0,
    updated_ts bigint NOT NULL,
    PRIMARY KEY (account, asset)
);

CREATE TABLE withdrawals (
    withdrawal_id text    PRIMARY KEY,   -- 0x + 64 hex, the vault's withdrawal_id
    account       text    NOT NULL,
    asset         text    NOT NULL,
    amount        numeric(78, 0) NOT NULL,
    to_address    text    NOT NULL,
    expiry        bigint  NOT NULL,      -- chain time, s since the epoch
    -- risk's decision (authorized, rejected), then the chain's outcome (confirmed, returned)
    status        text    NOT NULL CHECK (status IN (
                      'authorized', 'rejected', 'confirmed', 'returned')),
    token         text    NOT NULL DEFAULT '',
    vault         text    NOT NULL DEFAULT '',
    chain_id      bigint  NOT NULL DEFAULT 0,
    signature     text    NOT NULL DEFAULT '',
    reason        text    NOT NULL DEFAULT '',
    message       text    NOT NULL DEFAULT '',
    tx_hash       text    NOT NULL DEFAULT '',  -- of the Withdrawn log, once confirmed
    requested_ts  bigint  NOT NULL,
    updated_ts    bigint  NOT NULL
);
CREATE INDEX withdrawals_account ON withdrawals (account, requested_ts DESC, withdrawal_id DESC);
CREATE INDEX withdrawals_open ON withdrawals (expiry) WHERE status = 'authorized';

-- Vault deposits the watcher confirmed (event_id = block_hash:log_index); a reorg marks one
-- reversed.
CREATE TABLE deposits (
    event_id     text    PRIMARY KEY,
    account      text    NOT NULL,
    asset        text    NOT NULL,
    amount       numeric(78, 0) NOT NULL,
    sender       text    NOT NULL,
    tx_hash      text    NOT NULL,
    block_number bigint  NOT NULL,
    status       text    NOT NULL CHECK (status IN ('confirmed', 'reversed')),
    ts           bigint  NOT NULL
);
CREATE INDEX deposits_account ON deposits (account, ts DESC);
