-- Every CRL the manager issued (the newest is the one in force), so it survives restarts and the
-- courier can hand the same document to every agent until each has acknowledged it.
CREATE TABLE crls (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    number BIGINT NOT NULL,
    pem TEXT NOT NULL,
    this_update TIMESTAMP NOT NULL,
    next_update TIMESTAMP NOT NULL,
    revoked_count BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX uq_crls_number ON crls (number);

-- Per host: the newest CRL number its agent acknowledged, and the state of delivery attempts.
CREATE TABLE crl_deliveries (
    host_id BIGINT PRIMARY KEY NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    acked_number BIGINT,
    acked_at TIMESTAMP,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    last_attempt_at TIMESTAMP,
    next_attempt_at TIMESTAMP
);

-- Addresses an Admin vouches for when making a token (hosts behind NAT): the enrolling host may
-- ask for these addresses only, from any source. JSON list of IP addresses; NULL: none named.
ALTER TABLE enrollment_tokens ADD COLUMN addresses_json TEXT;
