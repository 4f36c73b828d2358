-- The shared `jti` replay store (auth.replay_store = "database"): one row per
-- (issuer, jti) first seen, kept until the token expires (plus the clock
-- skew). Several replicas on one database insert here, so a token replayed to
-- another replica finds its row. Times are Unix milliseconds, like the other
-- tables; expired rows are deleted periodically by expires_at.
CREATE TABLE jti_replay (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX jti_replay_expires_at ON jti_replay (expires_at);
