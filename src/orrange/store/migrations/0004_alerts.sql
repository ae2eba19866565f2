-- Price alerts, notifications, market signals and signal subscriptions (the alerter's tables).
-- Prices are integer ticks, times integer ms UTC; see orrange.store.alerts.

-- A user's price alert. rearm_after is the re-arm direction state of the AlertIndex restart
-- contract: the direction ('up'/'down') of the last fire of a re-arming alert still waiting
-- for its hysteresis band, NULL while armed. fire_count numbers the fires (notification ids).
CREATE TABLE alerts (
    id          bigserial PRIMARY KEY,
    user_id     text    NOT NULL,
    market      text    NOT NULL,
    condition   text    NOT NULL CHECK (condition IN ('above', 'below', 'crosses')),
    reference   text    NOT NULL CHECK (reference IN ('last', 'index')),
    target      bigint  NOT NULL CHECK (target >= 1),
    expires_at  bigint,
    rearm       boolean NOT NULL DEFAULT false,
    hysteresis  bigint  NOT NULL DEFAULT 0 CHECK (hysteresis >= 0),
    status      text    NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'fired', 'expired', 'deleted')),
    rearm_after text    CHECK (rearm_after IN ('up', 'down')),
    fire_count  bigint  NOT NULL DEFAULT 0,
    created_at  bigint  NOT NULL,
    updated_at  bigint  NOT NULL
);
CREATE INDEX alerts_user_id ON alerts (user_id, id);
CREATE INDEX alerts_active ON alerts (id) WHERE status = 'active';

-- One delivered (or to-be-delivered) message to a user: an alert fire or a subscribed signal.
-- id is deterministic ('alert:<alert id>:<fire number>', 'signal:<signal id>:<user>'), so a
-- redelivered input cannot insert it twice; (source, source_seq) is the input that made it.
CREATE TABLE notifications (
    id          text   PRIMARY KEY,
    user_id     text   NOT NULL,
    kind        text   NOT NULL CHECK (kind IN ('alert', 'signal')),
    market      text   NOT NULL,
    ts          bigint NOT NULL,
    alert_id    bigint,
    condition   text,
    reference   text,
    target      bigint,
    price       bigint,
    direction   text,
    final       boolean,
    signal_id   text,
    source      text   NOT NULL,
    source_seq  bigint NOT NULL
);
CREATE INDEX notifications_user_ts ON notifications (user_id, ts DESC, id DESC);
CREATE INDEX notifications_source ON notifications (source, source_seq);

-- Market signals (id '<symbol>:<interval>:<type>:<open_time>').
CREATE TABLE signals (
    id          text             PRIMARY KEY,
    symbol      text             NOT NULL,
    interval    text             NOT NULL,
    type        text             NOT NULL,
    open_time   bigint           NOT NULL,
    score       double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    value       double precision NOT NULL,
    explanation text             NOT NULL,
    source      text             NOT NULL,
    source_seq  bigint           NOT NULL
);
CREATE INDEX signals_symbol_time ON signals (symbol, open_time DESC, id);
CREATE INDEX signals_time ON signals (open_time DESC, id);
CREATE INDEX signals_source ON signals (source, source_seq);

-- A user's wish to be notified of signals (empty arrays mean "all").
CREATE TABLE signal_subscriptions (
    id          bigserial        PRIMARY KEY,
    user_id     text             NOT NULL,
    types       text[]           NOT NULL DEFAULT '{}',
    symbols     text[]           NOT NULL DEFAULT '{}',
    intervals   text[]           NOT NULL DEFAULT '{}',
    min_score   double precision NOT NULL DEFAULT 0 CHECK (min_score >= 0 AND min_score <= 1),
    active      boolean          NOT NULL DEFAULT true,
    created_at  bigint           NOT NULL
);
CREATE INDEX signal_subscriptions_user ON signal_subscriptions (user_id, id);

-- The alerter's last price per (market, reference), written with the alert states.
CREATE TABLE alerter_books (
    market     text   NOT NULL,
    reference  text   NOT NULL,
    last_price bigint NOT NULL,
    ts         bigint NOT NULL,
    PRIMARY KEY (market, reference)
);

-- The last input stream sequence applied per alerter consumer (durable name).
CREATE TABLE alerter_cursors (
    consumer text   PRIMARY KEY,
    seq      bigint NOT NULL
);
