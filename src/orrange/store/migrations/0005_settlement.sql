-- P2P settlement: trades followed by the escrow watcher (orrange.engine.escrow), the escrow
-- chain events applied to them, the watcher's chain cursor, reputations and the trade chat.
-- Amounts are exact integers (wei / token base units as numeric, quote cents as bigint),
-- times ms UTC, trade ids 0x + 64 hex, block hashes 0x hex.

CREATE TABLE settlement_trades (
    trade_id            text    PRIMARY KEY,
    symbol              text    NOT NULL,
    fill_seq            bigint  NOT NULL,
    buyer               text    NOT NULL,
    seller              text    NOT NULL,
    state               text    NOT NULL CHECK (state IN (
                            'awaiting_funding', 'funded', 'paid', 'released', 'disputed',
                            'resolved', 'expired', 'refunded', 'canceled')),
    created_ms          bigint  NOT NULL,
    funding_deadline_ms bigint  NOT NULL,
    payment_deadline_ms bigint,
    updated_ms          bigint  NOT NULL,
    escrow_address      text,
    tx_hashes           jsonb   NOT NULL DEFAULT '{}'::jsonb,
    -- the whole lifecycle Trade (orrange.settlement.lifecycle.Trade as msgspec JSON)
    doc                 jsonb   NOT NULL,
    UNIQUE (symbol, fill_seq)
);
CREATE INDEX settlement_trades_buyer ON settlement_trades (buyer, created_ms DESC, trade_id DESC);
CREATE INDEX settlement_trades_seller ON settlement_trades (seller, created_ms DESC, trade_id DESC);
CREATE INDEX settlement_trades_open ON settlement_trades (created_ms)
    WHERE state NOT IN ('released', 'resolved', 'refunded', 'canceled');

-- Every escrow log the watcher applied (event_id = block_hash:log_index). A reorg marks the
-- orphaned ones reverted; a log for a trade not opened yet waits here until its fill arrives.
CREATE TABLE settlement_chain_events (
    event_id     text    PRIMARY KEY,
    trade_id     text    NOT NULL,
    kind         text    NOT NULL,
    block_number bigint  NOT NULL,
    block_hash   text    NOT NULL,
    log_index    integer NOT NULL,
    tx_hash      text    NOT NULL,
    at_ms        bigint  NOT NULL,
    payload      jsonb   NOT NULL,
    reverted     boolean NOT NULL DEFAULT false
);
CREATE INDEX settlement_chain_events_trade ON settlement_chain_events (trade_id);
CREATE INDEX settlement_chain_events_block ON settlement_chain_events (block_number)
    WHERE NOT reverted;

-- The watcher's position per escrow contract: the last fully processed block.
CREATE TABLE settlement_cursor (
    escrow_address text   PRIMARY KEY,
    block_number   bigint NOT NULL,
    block_hash     text   NOT NULL,
    updated_ms     bigint NOT NULL
);

-- Hashes of recently processed blocks (the reorg check walks back through them).
CREATE TABLE settlement_blocks (
    escrow_address text   NOT NULL,
    block_number   bigint NOT NULL,
    block_hash     text   NOT NULL,
    PRIMARY KEY (escrow_address, block_number)
);

-- Reputation facts (orrange.settlement.lifecycle.ReputationEvent; one per user, trade, kind).
CREATE TABLE reputation_facts (
    user_id    text   NOT NULL,
    trade_id   text   NOT NULL,
    kind       text   NOT NULL CHECK (kind IN ('completed', 'dispute_lost', 'timed_out')),
    volume     bigint NOT NULL,
    at_ms      bigint NOT NULL,
    release_ms bigint,
    PRIMARY KEY (user_id, trade_id, kind)
);

-- Each user's aggregated facts and score (orrange.settlement.reputation), refreshed whenever
-- a fact changes; the API stamps `score` into the user's orders of P2P markets.
CREATE TABLE reputations (
    user_id            text    PRIMARY KEY,
    score              integer NOT NULL,
    completed          integer NOT NULL,
    volume             bigint  NOT NULL,
    disputes_lost      integer NOT NULL,
    timed_out          integer NOT NULL,
    median_release_ms  bigint,
    account_created_ms bigint  NOT NULL,
    updated_ms         bigint  NOT NULL
);

-- The trade chat: the two parties and, after a dispute, mediators.
CREATE TABLE trade_messages (
    id       bigserial PRIMARY KEY,
    trade_id text      NOT NULL REFERENCES settlement_trades (trade_id),
    sender   text      NOT NULL,
    role     text      NOT NULL CHECK (role IN ('buyer', 'seller', 'mediator')),
    body     text      NOT NULL,
    ts       bigint    NOT NULL
);
CREATE INDEX trade_messages_trade ON trade_messages (trade_id, id);
