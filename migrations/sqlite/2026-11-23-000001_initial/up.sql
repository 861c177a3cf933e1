-- Initial schema (SQLite). Kept in step with migrations/postgres and
-- app/src/db/schema.rs; a test compares the trees column by column.
-- Timestamps are UTC, stored without time zone. JSON payloads are TEXT.

-- Managed hosts running the patch agent, with their last known state.
CREATE TABLE hosts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    fqdn TEXT,
    ip_address TEXT NOT NULL,
    display_name TEXT NOT NULL,
    agent_port INTEGER NOT NULL,
    os_id TEXT,
    os_version TEXT,
    kernel TEXT,
    arch TEXT,
    agent_version TEXT,
    status TEXT NOT NULL,
    status_reason TEXT,
    status_changed_at TIMESTAMP,
    last_seen_at TIMESTAMP,
    last_health_at TIMESTAMP,
    last_patch_scan_at TIMESTAMP,
    reboot_required BOOLEAN NOT NULL,
    pending_patches BIGINT NOT NULL,
    pending_security_patches BIGINT NOT NULL,
    inventory_hash TEXT,
    cert_fingerprint TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX uq_hosts_ip_address_agent_port ON hosts (ip_address, agent_port);
CREATE INDEX idx_hosts_status ON hosts (status);

-- Named groups of hosts (also the unit of user access).
CREATE TABLE host_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX uq_host_groups_name ON host_groups (name);

-- Membership of hosts in host groups.
CREATE TABLE host_group_members (
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES host_groups (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (host_id, group_id)
);
CREATE INDEX idx_host_group_members_group_id ON host_group_members (group_id);

-- Local and SSO user accounts.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    email TEXT,
    password_hash TEXT,
    role TEXT NOT NULL,
    is_disabled BOOLEAN NOT NULL,
    mfa_required BOOLEAN NOT NULL,
    sso_issuer TEXT,
    sso_subject TEXT,
    failed_logins BIGINT NOT NULL,
    locked_until TIMESTAMP,
    last_login_at TIMESTAMP,
    password_changed_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX uq_users_username ON users (username);
CREATE UNIQUE INDEX uq_users_sso_issuer_sso_subject ON users (sso_issuer, sso_subject);

-- Host groups a user may act on.
CREATE TABLE user_groups (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES host_groups (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX idx_user_groups_group_id ON user_groups (group_id);

-- MFA credentials: TOTP secrets, passkeys and recovery codes (data encrypted by the app).
CREATE TABLE user_credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    confirmed BOOLEAN NOT NULL,
    last_used_step BIGINT,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
CREATE INDEX idx_user_credentials_user_id ON user_credentials (user_id);

-- Short-lived server-side state for login, MFA and passkey ceremonies.
CREATE TABLE auth_challenges (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    state_json TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX idx_auth_challenges_user_id ON auth_challenges (user_id);
CREATE INDEX idx_auth_challenges_expires_at ON auth_challenges (expires_at);

-- Keys used to sign access tokens, including retired keys kept for verification.
CREATE TABLE signing_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    kid TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL,
    not_after TIMESTAMP NOT NULL,
    retired_at TIMESTAMP
);
CREATE UNIQUE INDEX uq_signing_keys_kid ON signing_keys (kid);

-- Refresh tokens (hashed), grouped into rotation families for reuse detection.
CREATE TABLE refresh_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    issued_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP,
    revoked_reason TEXT,
    replaced_by BIGINT,
    user_agent TEXT,
    source_ip TEXT
);
CREATE UNIQUE INDEX uq_refresh_tokens_token_hash ON refresh_tokens (token_hash);
CREATE INDEX idx_refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE INDEX idx_refresh_tokens_family_id ON refresh_tokens (family_id);

-- Recurring or one-off windows in which patching of a host or group is allowed.
CREATE TABLE maintenance_windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    host_id BIGINT REFERENCES hosts (id) ON DELETE CASCADE,
    group_id BIGINT REFERENCES host_groups (id) ON DELETE CASCADE,
    recurrence TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    start_date TEXT NOT NULL,
    start_time TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL,
    weekday INTEGER,
    day_of_month INTEGER,
    enabled BOOLEAN NOT NULL,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX idx_maintenance_windows_host_id ON maintenance_windows (host_id);
CREATE INDEX idx_maintenance_windows_group_id ON maintenance_windows (group_id);
CREATE INDEX idx_maintenance_windows_created_by ON maintenance_windows (created_by);

-- Patch jobs: what to install, where, and how the rollout proceeds in waves.
CREATE TABLE patch_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    selection TEXT NOT NULL,
    packages_json TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    waves_json TEXT NOT NULL,
    max_concurrency BIGINT NOT NULL,
    failure_threshold_pct INTEGER NOT NULL,
    auto_rollback BOOLEAN NOT NULL,
    halted_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE INDEX idx_patch_jobs_created_by ON patch_jobs (created_by);
CREATE INDEX idx_patch_jobs_status ON patch_jobs (status);

-- Per-host progress of a patch job (the unique index also serves lookups by job_id).
CREATE TABLE patch_job_hosts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    job_id BIGINT NOT NULL REFERENCES patch_jobs (id) ON DELETE CASCADE,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    wave INTEGER NOT NULL,
    status TEXT NOT NULL,
    agent_job_id TEXT,
    attempt INTEGER NOT NULL,
    next_retry_at TIMESTAMP,
    results_json TEXT,
    log_tail TEXT,
    error TEXT,
    rollback_agent_job_id TEXT,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE UNIQUE INDEX uq_patch_job_hosts_job_id_host_id ON patch_job_hosts (job_id, host_id);
CREATE INDEX idx_patch_job_hosts_host_id_status ON patch_job_hosts (host_id, status);

-- Installed package inventory reported by each host.
CREATE TABLE host_packages (
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    arch TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT,
    PRIMARY KEY (host_id, name, arch)
);

-- Pending updates reported by each host's last patch scan.
CREATE TABLE host_patches (
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    arch TEXT NOT NULL,
    installed_version TEXT,
    candidate_version TEXT NOT NULL,
    origin TEXT,
    is_security BOOLEAN NOT NULL,
    severity TEXT,
    cves_json TEXT NOT NULL,
    reboot_likely BOOLEAN NOT NULL,
    detected_at TIMESTAMP NOT NULL,
    PRIMARY KEY (host_id, name, arch)
);
CREATE INDEX idx_host_patches_host_id_is_security ON host_patches (host_id, is_security);

-- Latest agent health report per host.
CREATE TABLE host_health (
    host_id BIGINT PRIMARY KEY NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    checked_at TIMESTAMP NOT NULL,
    agent_status TEXT NOT NULL,
    backend TEXT,
    jobs_running BIGINT NOT NULL,
    jobs_queued BIGINT NOT NULL,
    exclusive_mode BOOLEAN NOT NULL,
    cert_expires_at TIMESTAMP,
    uptime_seconds BIGINT,
    latency_ms BIGINT,
    details_json TEXT NOT NULL
);

-- Certificates issued by the built-in CA (kept after host deletion for history).
CREATE TABLE certificates (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    serial TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    sans_json TEXT NOT NULL,
    host_id BIGINT REFERENCES hosts (id) ON DELETE SET NULL,
    fingerprint_sha256 TEXT NOT NULL,
    not_before TIMESTAMP NOT NULL,
    not_after TIMESTAMP NOT NULL,
    cert_pem TEXT NOT NULL,
    revoked_at TIMESTAMP,
    revocation_reason TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX uq_certificates_serial ON certificates (serial);
CREATE UNIQUE INDEX uq_certificates_fingerprint_sha256 ON certificates (fingerprint_sha256);
CREATE INDEX idx_certificates_host_id ON certificates (host_id);
CREATE INDEX idx_certificates_not_after ON certificates (not_after);

-- One-time tokens (hashed) that let a new agent enrol.
CREATE TABLE enrollment_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    token_hash TEXT NOT NULL,
    group_id BIGINT REFERENCES host_groups (id) ON DELETE SET NULL,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    used_by_host_id BIGINT REFERENCES hosts (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX uq_enrollment_tokens_token_hash ON enrollment_tokens (token_hash);
CREATE INDEX idx_enrollment_tokens_group_id ON enrollment_tokens (group_id);
CREATE INDEX idx_enrollment_tokens_created_by ON enrollment_tokens (created_by);
CREATE INDEX idx_enrollment_tokens_used_by_host_id ON enrollment_tokens (used_by_host_id);

-- Hash-chained audit trail; ids are assigned by the application (single writer).
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY NOT NULL,
    ts TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    details_json TEXT NOT NULL,
    source_ip TEXT,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
);
CREATE INDEX idx_audit_log_ts ON audit_log (ts);

-- Runtime settings editable from the UI, as JSON values by key.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value_json TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    updated_by TEXT
);

-- Network scans for agents not yet enrolled.
CREATE TABLE discovery_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    cidrs_json TEXT NOT NULL,
    status TEXT NOT NULL,
    started_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    probes_total BIGINT NOT NULL,
    probes_done BIGINT NOT NULL,
    found_count BIGINT NOT NULL,
    error TEXT,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX idx_discovery_runs_started_by ON discovery_runs (started_by);

-- Agents found by a discovery run, and the host they were adopted as.
CREATE TABLE discovery_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    run_id BIGINT NOT NULL REFERENCES discovery_runs (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    cert_subject TEXT,
    cert_fingerprint TEXT,
    agent_version TEXT,
    found_at TIMESTAMP NOT NULL,
    adopted_host_id BIGINT REFERENCES hosts (id) ON DELETE SET NULL
);
CREATE INDEX idx_discovery_results_run_id ON discovery_results (run_id);
CREATE INDEX idx_discovery_results_adopted_host_id ON discovery_results (adopted_host_id);
