-- The alerter's last price per (market, reference) as one row: a msgpack array of
-- [market, reference, last_price (ticks), ts (ms UTC)], rewritten with every alerter commit.
-- One small update per commit instead of an upsert per market (a round of 1,000 index prices
-- touches every market). When the row exists it supersedes alerter_books (kept for the
-- prices stored before it).
CREATE TABLE alerter_book_snapshot (
    id    smallint PRIMARY KEY CHECK (id = 1),
    books bytea    NOT NULL
);
