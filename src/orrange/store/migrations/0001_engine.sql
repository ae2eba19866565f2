-- Orrange engine store: what the persister writes from EVENTS (evt.<SYM>) and REJECTS (rej.<SYM>).
-- Prices are integer ticks, quantities integer lots, fees integer quote units, times ms UTC.

CREATE TABLE orders (
    symbol          text    NOT NULL,
    order_id        bigint  NOT NULL,
    user_id         text    NOT NULL,
    client_order_id text    NOT NULL,
    side            text    NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type      text    NOT NULL,
    tif             text    NOT NULL,
    price           bigint,
    trigger_price   bigint,
    quantity        bigint  NOT NULL,
    leaves          bigint  NOT NULL,
    filled          bigint  NOT NULL,
    status          text    NOT NULL CHECK (status IN (
                        'new', 'partially_filled', 'filled', 'canceled', 'expired',
                        'rejected', 'pending')),
    reason          text,
    created_ts      bigint  NOT NULL,
    updated_ts      bigint  NOT NULL,
    last_seq        bigint  NOT NULL,
    PRIMARY KEY (symbol, order_id)
);

-- a user's history, newest first (keyset: created_ts, symbol, order_id)
CREATE INDEX orders_user_history
    ON orders (user_id, created_ts DESC, symbol DESC, order_id DESC);
-- a user's open orders, same order
CREATE INDEX orders_user_open
    ON orders (user_id, created_ts DESC, symbol DESC, order_id DESC)
    WHERE status IN ('new', 'partially_filled', 'pending');
CREATE INDEX orders_client_order_id ON orders (user_id, client_order_id);
CREATE INDEX orders_order_id ON orders (order_id);

CREATE TABLE order_events (
    symbol   text   NOT NULL,
    seq      bigint NOT NULL,
    type     text   NOT NULL,
    order_id bigint,
    ts       bigint NOT NULL,
    payload  jsonb  NOT NULL,
    PRIMARY KEY (symbol, seq)
);
CREATE INDEX order_events_order ON order_events (symbol, order_id);

CREATE TABLE fills (
    symbol          text    NOT NULL,
    seq             bigint  NOT NULL,
    ts              bigint  NOT NULL,
    maker_order_id  bigint  NOT NULL,
    taker_order_id  bigint  NOT NULL,
    maker_user      text    NOT NULL,
    taker_user      text    NOT NULL,
    price           bigint  NOT NULL,
    quantity        bigint  NOT NULL,
    aggressor       text    NOT NULL CHECK (aggressor IN ('buy', 'sell')),
    maker_fee       bigint  NOT NULL,
    taker_fee       bigint  NOT NULL,
    payment_methods text[]  NOT NULL,
    PRIMARY KEY (symbol, seq)
);
CREATE INDEX fills_symbol_ts ON fills (symbol, ts);
CREATE INDEX fills_maker_order ON fills (symbol, maker_order_id);
CREATE INDEX fills_taker_order ON fills (symbol, taker_order_id);

-- Rejected commands: risk's (rej.<SYM>, seq 0) and the book's (evt.<SYM>, seq > 0).
-- id: the message's Nats-Msg-Id (risk: rej:<input id>; book: <SYM>:<seq>).
CREATE TABLE rejections (
    id              text    PRIMARY KEY,
    source          text    NOT NULL CHECK (source IN ('risk', 'book')),
    symbol          text    NOT NULL,
    seq             bigint  NOT NULL,
    order_id        bigint  NOT NULL,
    user_id         text    NOT NULL,
    client_order_id text    NOT NULL,
    command         text    NOT NULL,
    reason          text    NOT NULL,
    message         text    NOT NULL,
    ts              bigint  NOT NULL
);
CREATE INDEX rejections_client_order_id ON rejections (user_id, client_order_id, ts DESC);
