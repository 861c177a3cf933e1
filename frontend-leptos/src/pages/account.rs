//! `/account`: the signed-in user's second factors — authenticator apps (TOTP) with QR code and
//! confirmation, recovery codes (shown once), removal.

use crate::api;
use crate::app::Session;
use crate::pages::signin::Field;
use crate::ui::{load, loaded, maybe_time, short_time, ErrorLine, Submit};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{self as ep, NoBody};
use shared::auth::{
    MfaStatus, PasskeyRegisterFinish, PasskeyRegisterStart, TotpConfirmRequest, TotpEnrolRequest,
    TotpEnrolment,
};
use shared::ids::CredentialId;
use shared::vocab::FactorKind;

/// The account page.
#[component]
pub fn AccountPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let status = loaded::<MfaStatus>();
    let reload = move || load::<ep::GetMfa>((), status);
    Effect::new(move |_| reload());

    let name = RwSignal::new("Authenticator app".to_owned());
    let enrolment = RwSignal::new(None::<TotpEnrolment>);
    let code = RwSignal::new(String::new());
    let recovery = RwSignal::new(Vec::<String>::new());
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);

    let start = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = TotpEnrolRequest {
            name: name.get_untracked(),
        };
        spawn_local(async move {
            match api::call::<ep::TotpStart>((), &body).await {
                Ok(e) => {
                    error.set(None);
                    code.set(String::new());
                    enrolment.set(Some(e));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let confirm = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some(e) = enrolment.get_untracked() else {
            return;
        };
        let body = TotpConfirmRequest {
            code: code.get_untracked().trim().to_owned(),
        };
        spawn_local(async move {
            match api::call::<ep::TotpConfirm>(e.credential_id, &body).await {
                Ok(r) => {
                    error.set(None);
                    enrolment.set(None);
                    recovery.set(r.recovery_codes);
                    notice.set(Some("Authenticator app added.".into()));
                    reload();
                    session.reload().await;
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let key_name = RwSignal::new("Security key".to_owned());
    let add_key = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = PasskeyRegisterStart {
            name: key_name.get_untracked(),
        };
        notice.set(Some(
            "Touch your security key or confirm on your device…".into(),
        ));
        spawn_local(async move {
            let outcome = async {
                let start = api::call::<ep::WebauthnRegisterStart>((), &body)
                    .await
                    .map_err(|e| e.message)?;
                let credential = crate::webauthn::create(start.options).await?;
                api::call::<ep::WebauthnRegisterFinish>(
                    (),
                    &PasskeyRegisterFinish {
                        challenge_id: start.challenge_id,
                        credential,
                    },
                )
                .await
                .map_err(|e| e.message)
            }
            .await;
            match outcome {
                Ok(r) => {
                    error.set(None);
                    recovery.set(r.recovery_codes);
                    notice.set(Some("Security key added.".into()));
                    reload();
                    session.reload().await;
                }
                Err(e) => {
                    notice.set(None);
                    error.set(Some(e));
                }
            }
        });
    };
    let remove = move |id: CredentialId| {
        spawn_local(async move {
            match api::call::<ep::RemoveFactor>(id, &NoBody).await {
                Ok(NoBody) => {
                    error.set(None);
                    notice.set(Some("Removed.".into()));
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let renew_codes = move |_| {
        spawn_local(async move {
            match api::call::<ep::RenewRecoveryCodes>((), &NoBody).await {
                Ok(r) => {
                    error.set(None);
                    recovery.set(r.recovery_codes);
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    view! {
        <section class="page">
            <h1>"Account"</h1>
            <Show when=move || session.me.with(|m| m.as_ref().is_some_and(|m| m.mfa_enrolment_pending))>
                <p class="card warn" id="mfa-required-notice" role="status">
                    "Your administrator requires a second factor for your account. Add an "
                    "authenticator app below to continue."
                </p>
            </Show>
            <section class="card">
                <h2>"Second factors"</h2>
                {move || match status.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                    Some(Ok(s)) => view! {
                        <p class="muted">
                            {if s.required { "Required for this account. " } else { "" }}
                            "Unused recovery codes: " <span id="recovery-left">{s.recovery_codes_left}</span>
                        </p>
                        <table class="table" id="factors">
                            <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Added"</th><th>"Last used"</th><th></th></tr></thead>
                            <tbody>
                                {s.credentials.into_iter().map(|c| {
                                    let id = c.id;
                                    view! {
                                        <tr>
                                            <td>{c.name}</td>
                                            <td>{if c.kind == FactorKind::Totp { "Authenticator app" } else { "Security key / passkey" }}</td>
                                            <td>{short_time(&c.created_at)}</td>
                                            <td>{maybe_time(c.last_used_at.as_deref())}</td>
                                            <td><button type="button" class="danger" on:click=move |_| remove(id)>"Remove"</button></td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }}
                <button type="button" id="renew-recovery" on:click=renew_codes>"New recovery codes"</button>
            </section>

            <section class="card">
                <h2>"Add an authenticator app"</h2>
                <Show
                    when=move || enrolment.with(Option::is_some)
                    fallback=move || view! {
                        <form class="form" on:submit=start>
                            <Field id="totp-name" label="Name" value=name required=true/>
                            <Submit id="totp-start" label="Show QR code"/>
                        </form>
                    }
                >
                    <p>"Scan this code with the app, or type the key by hand, then enter the code it shows."</p>
                    <div class="qr" id="totp-qr" inner_html=move || enrolment.with(|e| e.as_ref().map(|e| e.qr_svg.clone()).unwrap_or_default())></div>
                    <p>"Key: " <code id="totp-secret">{move || enrolment.with(|e| e.as_ref().map(|e| e.secret_base32.clone()).unwrap_or_default())}</code></p>
                    <form class="form" on:submit=confirm>
                        <Field id="totp-code" label="Code from the app" value=code autocomplete="one-time-code" required=true/>
                        <Submit id="totp-confirm" label="Confirm"/>
                    </form>
                </Show>
            </section>

            <section class="card">
                <h2>"Add a security key or passkey"</h2>
                <form class="form" on:submit=add_key>
                    <Field id="key-name" label="Name" value=key_name required=true/>
                    <Submit id="key-add" label="Add security key"/>
                </form>
            </section>

            <Show when=move || !recovery.with(Vec::is_empty)>
                <section class="card" aria-labelledby="recovery-title">
                    <h2 id="recovery-title">"Your recovery codes"</h2>
                    <p>"Each works once if you lose the app. Store them now: they are not shown again."</p>
                    <ul class="codes" id="recovery-codes">
                        {move || recovery.get().into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}
                    </ul>
                </section>
            </Show>
            <p class="ok" role="status">{move || notice.get().unwrap_or_default()}</p>
            <ErrorLine error/>
        </section>
    }
}
