-- The vault watcher (orrange.engine.vault_watcher, docs/funds.md "Chain in, chain out"). Its
-- cursor and remembered block hashes are rows of settlement_cursor / settlement_blocks keyed
-- by the vault's address (those tables hold one cursor per followed contract); credited
-- deposits go to deposits (0008). Amounts are integers of base units, times ms UTC.

-- Every vault log the watcher took at the confirmation depth (event_id = block_hash:log_index),
-- including deposits that credit nobody (note: unknown_token, bad_account). A reorg marks the
-- orphaned ones reverted; revision counts how often a log came back after being reverted.
CREATE TABLE vault_events (
    event_id      text    PRIMARY KEY,
    kind          text    NOT NULL CHECK (kind IN ('deposited', 'withdrawn', 'withdrawal_canceled')),
    block_number  bigint  NOT NULL,
    log_index     integer NOT NULL,
    tx_hash       text    NOT NULL,
    withdrawal_id text    NOT NULL DEFAULT '',
    note          text    NOT NULL DEFAULT '',
    reverted      boolean NOT NULL DEFAULT false,
    revision      integer NOT NULL DEFAULT 0,
    at_ms         bigint  NOT NULL,
    payload       jsonb   NOT NULL
);
CREATE INDEX vault_events_block ON vault_events (block_number) WHERE NOT reverted;

-- What the watcher published about each withdrawal, once: confirmed (a Withdrawn log, its
-- event id) or expired (a cancel log's event id, or '' for an authorization past its expiry).
CREATE TABLE vault_withdrawal_outcomes (
    withdrawal_id text   PRIMARY KEY,
    outcome       text   NOT NULL CHECK (outcome IN ('confirmed', 'expired')),
    event_id      text   NOT NULL,
    block_number  bigint NOT NULL,
    at_ms         bigint NOT NULL
);
