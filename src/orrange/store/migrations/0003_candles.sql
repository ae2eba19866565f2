-- Candles built by the feed actor (orrange.engine.feed) from our own fills and external trades.
-- Prices are integer ticks, volumes integer lots, quote volumes integer quote units, times ms UTC.
-- A row is upserted while its window is open (final = false) and written once more, final,
-- when the window closes; a final row is never changed again.

CREATE TABLE candles (
    symbol                 text           NOT NULL,
    interval               text           NOT NULL,
    open_time              bigint         NOT NULL,
    close_time             bigint         NOT NULL,
    open                   bigint         NOT NULL,
    high                   bigint         NOT NULL,
    low                    bigint         NOT NULL,
    close                  bigint         NOT NULL,
    volume                 numeric(40, 0) NOT NULL,
    quote_volume           numeric(60, 0) NOT NULL,
    trades                 bigint         NOT NULL,
    taker_buy_volume       numeric(40, 0) NOT NULL,
    taker_buy_quote_volume numeric(60, 0) NOT NULL,
    vwap                   bigint         NOT NULL,
    first_trade_time       bigint         NOT NULL,
    last_trade_time        bigint         NOT NULL,
    final                  boolean        NOT NULL,
    PRIMARY KEY (symbol, interval, open_time)
);

-- per market: the EVENTS seq of the last own fill counted in the candles (a redelivered fill
-- at or below it is not counted again)
CREATE TABLE candle_fill_marks (
    symbol   text   PRIMARY KEY,
    last_seq bigint NOT NULL
);
