//! Diesel table definitions shared by the SQLite and PostgreSQL backends; kept in step with migrations/ (a test compares the two trees).
//!
//! Surrogate `id` columns are `BigInt` on both backends (SQLite `INTEGER PRIMARY KEY` is a
//! 64-bit rowid). Timestamps are UTC without time zone; `*_json` columns hold JSON as text.

diesel::table! {
    /// Managed hosts running the patch agent, with their last known state.
    hosts (id) {
        id -> BigInt,
        fqdn -> Nullable<Text>,
        ip_address -> Text,
        display_name -> Text,
        agent_port -> Integer,
        os_id -> Nullable<Text>,
        os_version -> Nullable<Text>,
        kernel -> Nullable<Text>,
        arch -> Nullable<Text>,
        agent_version -> Nullable<Text>,
        status -> Text,
        status_reason -> Nullable<Text>,
        status_changed_at -> Nullable<Timestamp>,
        last_seen_at -> Nullable<Timestamp>,
        last_health_at -> Nullable<Timestamp>,
        last_patch_scan_at -> Nullable<Timestamp>,
        reboot_required -> Bool,
        pending_patches -> BigInt,
        pending_security_patches -> BigInt,
        inventory_hash -> Nullable<Text>,
        cert_fingerprint -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Named groups of hosts (also the unit of user access).
    host_groups (id) {
        id -> BigInt,
        name -> Text,
        description -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Membership of hosts in host groups.
    host_group_members (host_id, group_id) {
        host_id -> BigInt,
        group_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Local and SSO user accounts.
    users (id) {
        id -> BigInt,
        username -> Text,
        display_name -> Text,
        email -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        role -> Text,
        is_disabled -> Bool,
        mfa_required -> Bool,
        sso_issuer -> Nullable<Text>,
        sso_subject -> Nullable<Text>,
        failed_logins -> BigInt,
        locked_until -> Nullable<Timestamp>,
        last_login_at -> Nullable<Timestamp>,
        password_changed_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Host groups a user may act on.
    user_groups (user_id, group_id) {
        user_id -> BigInt,
        group_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// MFA credentials: TOTP secrets, passkeys and recovery codes (data encrypted by the app).
    user_credentials (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        name -> Text,
        data -> Text,
        confirmed -> Bool,
        last_used_step -> Nullable<BigInt>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Short-lived server-side state for login, MFA and passkey ceremonies.
    auth_challenges (id) {
        id -> BigInt,
        user_id -> Nullable<BigInt>,
        kind -> Text,
        state_json -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        attempts -> BigInt,
    }
}

diesel::table! {
    /// Keys used to sign access tokens, including retired keys kept for verification.
    signing_keys (id) {
        id -> BigInt,
        kid -> Text,
        algorithm -> Text,
        private_key -> Binary,
        public_key -> Binary,
        created_at -> Timestamp,
        not_after -> Timestamp,
        retired_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Refresh tokens (hashed), grouped into rotation families for reuse detection.
    refresh_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        family_id -> Text,
        token_hash -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        revoked_reason -> Nullable<Text>,
        replaced_by -> Nullable<BigInt>,
        user_agent -> Nullable<Text>,
        source_ip -> Nullable<Text>,
    }
}

diesel::table! {
    /// Recurring or one-off windows in which patching of a host or group is allowed.
    maintenance_windows (id) {
        id -> BigInt,
        name -> Text,
        host_id -> Nullable<BigInt>,
        group_id -> Nullable<BigInt>,
        recurrence -> Text,
        time_zone -> Text,
        start_date -> Text,
        start_time -> Text,
        duration_minutes -> Integer,
        weekday -> Nullable<Integer>,
        day_of_month -> Nullable<Integer>,
        enabled -> Bool,
        created_by -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Patch jobs: what to install, where, and how the rollout proceeds in waves.
    patch_jobs (id) {
        id -> BigInt,
        name -> Text,
        created_by -> Nullable<BigInt>,
        selection -> Text,
        packages_json -> Text,
        mode -> Text,
        status -> Text,
        waves_json -> Text,
        max_concurrency -> BigInt,
        failure_threshold_pct -> Integer,
        auto_rollback -> Bool,
        halted_reason -> Nullable<Text>,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Per-host progress of a patch job.
    patch_job_hosts (id) {
        id -> BigInt,
        job_id -> BigInt,
        host_id -> BigInt,
        wave -> Integer,
        status -> Text,
        agent_job_id -> Nullable<Text>,
        attempt -> Integer,
        next_retry_at -> Nullable<Timestamp>,
        results_json -> Nullable<Text>,
        log_tail -> Nullable<Text>,
        error -> Nullable<Text>,
        rollback_agent_job_id -> Nullable<Text>,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Installed package inventory reported by each host.
    host_packages (host_id, name, arch) {
        host_id -> BigInt,
        name -> Text,
        arch -> Text,
        version -> Text,
        status -> Text,
        source -> Nullable<Text>,
    }
}

diesel::table! {
    /// Pending updates reported by each host's last patch scan.
    host_patches (host_id, name, arch) {
        host_id -> BigInt,
        name -> Text,
        arch -> Text,
        installed_version -> Nullable<Text>,
        candidate_version -> Text,
        origin -> Nullable<Text>,
        is_security -> Bool,
        severity -> Nullable<Text>,
        cves_json -> Text,
        reboot_likely -> Bool,
        detected_at -> Timestamp,
    }
}

diesel::table! {
    /// Latest agent health report per host.
    host_health (host_id) {
        host_id -> BigInt,
        checked_at -> Timestamp,
        agent_status -> Text,
        backend -> Nullable<Text>,
        jobs_running -> BigInt,
        jobs_queued -> BigInt,
        exclusive_mode -> Bool,
        cert_expires_at -> Nullable<Timestamp>,
        uptime_seconds -> Nullable<BigInt>,
        latency_ms -> Nullable<BigInt>,
        details_json -> Text,
    }
}

diesel::table! {
    /// Certificates issued by the built-in CA (kept after host deletion for history).
    certificates (id) {
        id -> BigInt,
        serial -> Text,
        kind -> Text,
        subject -> Text,
        sans_json -> Text,
        host_id -> Nullable<BigInt>,
        fingerprint_sha256 -> Text,
        not_before -> Timestamp,
        not_after -> Timestamp,
        cert_pem -> Text,
        revoked_at -> Nullable<Timestamp>,
        revocation_reason -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// One-time tokens (hashed) that let a new agent enrol.
    enrollment_tokens (id) {
        id -> BigInt,
        token_hash -> Text,
        group_id -> Nullable<BigInt>,
        created_by -> Nullable<BigInt>,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        used_by_host_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        addresses_json -> Nullable<Text>,
        hostname -> Nullable<Text>,
    }
}

diesel::table! {
    /// Every CRL the manager issued; the newest is in force.
    crls (id) {
        id -> BigInt,
        number -> BigInt,
        pem -> Text,
        this_update -> Timestamp,
        next_update -> Timestamp,
        revoked_count -> BigInt,
        reason -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Per host: the newest CRL its agent acknowledged and the state of delivery attempts.
    crl_deliveries (host_id) {
        host_id -> BigInt,
        acked_number -> Nullable<BigInt>,
        acked_at -> Nullable<Timestamp>,
        attempts -> BigInt,
        last_error -> Nullable<Text>,
        last_attempt_at -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Hash-chained audit trail; ids are assigned by the application (single writer).
    audit_log (id) {
        id -> BigInt,
        ts -> Timestamp,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        outcome -> Text,
        details_json -> Text,
        source_ip -> Nullable<Text>,
        request_id -> Nullable<Text>,
        prev_hash -> Text,
        row_hash -> Text,
    }
}

diesel::table! {
    /// Runtime settings editable from the UI, as JSON values by key.
    settings (key) {
        key -> Text,
        value_json -> Text,
        updated_at -> Timestamp,
        updated_by -> Nullable<Text>,
    }
}

diesel::table! {
    /// Network scans for agents not yet enrolled.
    discovery_runs (id) {
        id -> BigInt,
        cidrs_json -> Text,
        status -> Text,
        started_by -> Nullable<BigInt>,
        probes_total -> BigInt,
        probes_done -> BigInt,
        found_count -> BigInt,
        error -> Nullable<Text>,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Agents found by a discovery run, and the host they were adopted as.
    discovery_results (id) {
        id -> BigInt,
        run_id -> BigInt,
        address -> Text,
        port -> Integer,
        cert_subject -> Nullable<Text>,
        cert_fingerprint -> Nullable<Text>,
        agent_version -> Nullable<Text>,
        found_at -> Timestamp,
        adopted_host_id -> Nullable<BigInt>,
    }
}

diesel::joinable!(host_group_members -> hosts (host_id));
diesel::joinable!(host_group_members -> host_groups (group_id));
diesel::joinable!(user_groups -> users (user_id));
diesel::joinable!(user_groups -> host_groups (group_id));
diesel::joinable!(user_credentials -> users (user_id));
diesel::joinable!(auth_challenges -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(maintenance_windows -> hosts (host_id));
diesel::joinable!(maintenance_windows -> host_groups (group_id));
diesel::joinable!(maintenance_windows -> users (created_by));
diesel::joinable!(patch_jobs -> users (created_by));
diesel::joinable!(patch_job_hosts -> patch_jobs (job_id));
diesel::joinable!(patch_job_hosts -> hosts (host_id));
diesel::joinable!(host_packages -> hosts (host_id));
diesel::joinable!(host_patches -> hosts (host_id));
diesel::joinable!(host_health -> hosts (host_id));
diesel::joinable!(certificates -> hosts (host_id));
diesel::joinable!(crl_deliveries -> hosts (host_id));
diesel::joinable!(enrollment_tokens -> host_groups (group_id));
diesel::joinable!(enrollment_tokens -> users (created_by));
diesel::joinable!(enrollment_tokens -> hosts (used_by_host_id));
diesel::joinable!(discovery_runs -> users (started_by));
diesel::joinable!(discovery_results -> discovery_runs (run_id));
diesel::joinable!(discovery_results -> hosts (adopted_host_id));

diesel::allow_tables_to_appear_in_same_query!(
    hosts,
    crls,
    crl_deliveries,
    host_groups,
    host_group_members,
    users,
    user_groups,
    user_credentials,
    auth_challenges,
    signing_keys,
    refresh_tokens,
    maintenance_windows,
    patch_jobs,
    patch_job_hosts,
    host_packages,
    host_patches,
    host_health,
    certificates,
    enrollment_tokens,
    audit_log,
    settings,
    discovery_runs,
    discovery_results,
);
