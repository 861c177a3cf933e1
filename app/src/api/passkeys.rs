//! WebAuthn endpoints: registering a security key or passkey on the signed-in account, and using
//! one as the second sign-in step. See [`crate::auth::passkeys`].

use crate::api::auth::{audit, complete_sign_in, row_failure_update, second_step, SecondStep};
use crate::api::mfa::valid_name;
use crate::api::AppError;
use crate::auth::access::Caller;
use crate::auth::{mfa, passkeys};
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{transaction, users};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::auth::{
    PasskeyLoginFinish, PasskeyLoginOptions, PasskeyLoginStart, PasskeyRegisterFinish,
    PasskeyRegisterOptions, PasskeyRegisterStart, RecoveryCodes,
};
use webauthn_rs::prelude::{
    PasskeyAuthentication, PublicKeyCredential, RegisterPublicKeyCredential, Webauthn,
};

fn relying_party(state: &AppState) -> Result<&Webauthn, AppError> {
    state.webauthn.as_ref().as_ref().map_err(|why| {
        AppError::Conflict(format!(
            "security keys are not available on this manager: {why}"
        ))
    })
}

fn refused() -> AppError {
    AppError::Unauthorized(
        "the security key was not accepted; sign in again if it keeps failing".into(),
    )
}

/// `POST /api/v1/auth/mfa/webauthn/register/start`.
pub async fn register_start(
    state: web::Data<AppState>,
    who: Caller,
    body: web::Json<PasskeyRegisterStart>,
) -> Result<HttpResponse, AppError> {
    crate::api::mfa::require_recent_sign_in(&state, &who).await?;
    let rp = relying_party(&state)?;
    let name = valid_name(&body.name)?;
    let uid = who.identity.user_id;
    let (username, display, existing) = state
        .db
        .run(move |c| {
            let u = users::find(c, uid)?
                .ok_or_else(|| crate::db::DbError::Inconsistent(format!("user {uid} not found")))?;
            Ok((u.username, u.display_name, passkeys::existing_ids(c, uid)?))
        })
        .await?;
    let (options, reg_state) = rp
        .start_passkey_registration(
            passkeys::user_handle(uid),
            &username,
            &display,
            Some(existing),
        )
        .map_err(|e| AppError::Internal(format!("WebAuthn registration start: {e}")))?;
    let now = state.clock.now();
    let reg = passkeys::Registration {
        name,
        state: reg_state,
    };
    let challenge_id = state
        .db
        .run(move |c| passkeys::start_registration(c, uid, &reg, now))
        .await?;
    let options = serde_json::to_value(options).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(PasskeyRegisterOptions {
        challenge_id,
        options,
    }))
}

/// `POST /api/v1/auth/mfa/webauthn/register/finish`.
pub async fn register_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: web::Json<PasskeyRegisterFinish>,
) -> Result<HttpResponse, AppError> {
    let rp = relying_party(&state)?;
    let body = body.into_inner();
    let credential: RegisterPublicKeyCredential =
        serde_json::from_value(body.credential).map_err(|e| AppError::BadRequest {
            code: "invalid_credential",
            message: format!("not a WebAuthn registration: {e}"),
            details: serde_json::json!({ "field": "credential" }),
        })?;
    let uid = who.identity.user_id;
    let now = state.clock.now();
    let id = body.challenge_id;
    let reg = state
        .db
        .run(move |c| passkeys::take_registration(c, uid, id, now))
        .await?
        .ok_or_else(|| {
            AppError::NotFound(
                "no such registration in progress (it expires after five minutes)".into(),
            )
        })?;
    let key = rp
        .finish_passkey_registration(&credential, &reg.state)
        .map_err(|e| AppError::BadRequest {
            code: "webauthn_rejected",
            message: format!("the authenticator's answer was not accepted: {e}"),
            details: serde_json::Value::Null,
        })?;
    let name = reg.name.clone();
    let (cred_id, codes) = transaction::run(&state.db, move |c| {
        transaction(c, |c| {
            // Authenticators are asked not to register twice, but the answer is theirs to
            // give: check here too.
            if passkeys::existing_ids(c, uid)?.contains(key.cred_id()) {
                return Err(AppError::Conflict(
                    "this security key is already registered".into(),
                ));
            }
            let cred_id = passkeys::store(c, uid, &name, &key, now)?;
            let codes = if mfa::recovery_codes_left(c, uid)? == 0 {
                mfa::replace_recovery_codes(c, uid, now)?
            } else {
                Vec::new()
            };
            Ok((cred_id, codes))
        })
    })
    .await?;
    state
        .audit
        .note(
            NewAuditEntry::new(who.actor(), "mfa.webauthn_enrolled", Outcome::Success)
                .target(format!("user:{uid}"))
                .details(serde_json::json!({ "credential": cred_id, "name": reg.name }))
                .source(req.peer_addr().map(|a| a.ip())),
        )
        .await;
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// `POST /api/v1/auth/login/webauthn/start`: the second sign-in step with a security key.
pub async fn login_start(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PasskeyLoginStart>,
) -> Result<HttpResponse, AppError> {
    let rp = relying_party(&state)?;
    let token = body.into_inner().mfa_token;
    let step = second_step(&state, &req, &token, "webauthn", false, refused()).await?;
    let (challenge_id, user_id, challenge) = (step.challenge_id, step.user_id, step.challenge);
    let keys: Vec<_> = state
        .db
        .run(move |c| passkeys::passkeys(c, user_id))
        .await?
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    if keys.is_empty() {
        return Err(AppError::Conflict(
            "this account has no security key".into(),
        ));
    }
    let (options, auth_state) = rp
        .start_passkey_authentication(&keys)
        .map_err(|e| AppError::Internal(format!("WebAuthn sign-in start: {e}")))?;
    let saved = serde_json::to_value(&auth_state).map_err(|e| AppError::Internal(e.to_string()))?;
    state
        .db
        .run(move |c| mfa::set_login_webauthn(c, challenge_id, challenge, Some(saved)))
        .await?;
    let options = serde_json::to_value(options).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(PasskeyLoginOptions { options }))
}

/// `POST /api/v1/auth/login/webauthn/finish`.
pub async fn login_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PasskeyLoginFinish>,
) -> Result<HttpResponse, AppError> {
    let rp = relying_party(&state)?;
    let body = body.into_inner();
    let now = state.clock.now();
    let credential: PublicKeyCredential =
        serde_json::from_value(body.credential).map_err(|e| AppError::BadRequest {
            code: "invalid_credential",
            message: format!("not a WebAuthn assertion: {e}"),
            details: serde_json::json!({ "field": "credential" }),
        })?;
    let SecondStep {
        challenge_id,
        user_id,
        challenge,
        name,
        role,
    } = second_step(&state, &req, &body.mfa_token, "webauthn", true, refused()).await?;
    let auth_state: Option<PasskeyAuthentication> = challenge
        .webauthn
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let verdict = match auth_state {
        Some(s) => rp
            .finish_passkey_authentication(&credential, &s)
            .map_err(|e| e.to_string()),
        None => Err("no security-key ceremony was started on this sign-in".into()),
    };
    let result = match verdict {
        Ok(r) => r,
        Err(why) => {
            // The ceremony is spent either way: the next try starts a new one.
            let alive = state
                .db
                .run(move |c| {
                    mfa::set_login_webauthn(c, challenge_id, challenge, None)?;
                    mfa::fail_login_challenge(c, challenge_id)
                })
                .await?;
            let lock = row_failure_update(&state, &name, now)
                .await?
                .unwrap_or_default();
            audit(&state, &req, &name, "auth.mfa", Outcome::Denied,
                serde_json::json!({ "method": "webauthn", "reason": format!("{why}; {lock}"), "challenge_alive": alive })).await;
            return Err(refused());
        }
    };
    // Record the new signature counter on the key that signed, and end the challenge: one of two
    // racing completions wins.
    let won = state
        .db
        .run(move |c| {
            transaction(c, |c| {
                for (id, mut key) in passkeys::passkeys(c, user_id)? {
                    if key.update_credential(&result).is_some() {
                        passkeys::save_used(c, id, &key, now)?;
                    }
                }
                mfa::end_challenge(c, challenge_id)
            })
        })
        .await?;
    if !won {
        return Err(refused());
    }
    complete_sign_in(
        &state,
        &req,
        (user_id, name, role),
        challenge.client,
        "webauthn",
    )
    .await
}
