-- The 24 h ticker reads a market's fills by time: open/last are the first/last by (ts, seq) and
-- high/low/volumes aggregate price and quantity, all answered from this index alone.
DROP INDEX IF EXISTS fills_symbol_ts;
CREATE INDEX fills_symbol_ts_seq ON fills (symbol, ts, seq) INCLUDE (price, quantity);
