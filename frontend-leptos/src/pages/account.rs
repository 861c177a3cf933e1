//! `/account`: the signed-in user's second factors — authenticator apps (TOTP) with QR code and
//! confirmation, recovery codes (shown once), removal.

use crate::api;
use crate::app::Session;
use crate::pages::signin::Field;
use crate::ui::{
    load_on_mount, maybe_time, notice, report, short_time, Confirm, Empty, FieldError, Note,
    NoticeLine, Submit,
};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{self as ep, NoBody};
use shared::auth::{
    PasskeyRegisterFinish, PasskeyRegisterStart, TotpConfirmRequest, TotpEnrolRequest,
    TotpEnrolment,
};
use shared::ids::CredentialId;
use shared::vocab::FactorKind;

/// The account page.
#[component]
pub fn AccountPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let status = load_on_mount::<ep::GetMfa>();
    let reload = move || status.refetch();

    let name = RwSignal::new("Authenticator app".to_owned());
    let enrolment = RwSignal::new(None::<TotpEnrolment>);
    let code = RwSignal::new(String::new());
    let recovery = RwSignal::new(Vec::<String>::new());
    // One message per card, under its action.
    let factors_note = notice();
    let totp_note = notice();
    let key_note = notice();

    let start = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = TotpEnrolRequest {
            name: name.get_untracked(),
        };
        spawn_local(async move {
            match api::call::<ep::TotpStart>((), &body).await {
                Ok(e) => {
                    totp_note.set(None);
                    code.set(String::new());
                    enrolment.set(Some(e));
                }
                Err(e) => totp_note.set(Some(Note::Failed(e))),
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
                    enrolment.set(None);
                    code.set(String::new());
                    name.set("Authenticator app".into());
                    recovery.set(r.recovery_codes);
                    totp_note.set(Some(Note::Done("Authenticator app added.".into())));
                    reload();
                    session.reload().await;
                }
                Err(e) => totp_note.set(Some(Note::Failed(e))),
            }
        });
    };
    let key_name = RwSignal::new("Security key".to_owned());
    let add_key = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = PasskeyRegisterStart {
            name: key_name.get_untracked(),
        };
        key_note.set(Some(Note::Done(
            "Touch your security key or confirm on your device…".into(),
        )));
        spawn_local(async move {
            let outcome = async {
                let start = api::call::<ep::WebauthnRegisterStart>((), &body).await?;
                let credential = crate::webauthn::create(start.options)
                    .await
                    .map_err(|e| api::ApiError::local(e, None))?;
                api::call::<ep::WebauthnRegisterFinish>(
                    (),
                    &PasskeyRegisterFinish {
                        challenge_id: start.challenge_id,
                        credential,
                    },
                )
                .await
            }
            .await;
            match outcome {
                Ok(r) => {
                    key_name.set("Security key".into());
                    recovery.set(r.recovery_codes);
                    key_note.set(Some(Note::Done("Security key added.".into())));
                    reload();
                    session.reload().await;
                }
                Err(e) => key_note.set(Some(Note::Failed(e))),
            }
        });
    };
    let remove = move |id: CredentialId| {
        spawn_local(async move {
            let r = api::call::<ep::RemoveFactor>(id, &NoBody).await;
            report(factors_note, &r, |_| "Removed.".into());
            if r.is_ok() {
                reload();
            }
        });
    };
    let renew_codes = move || {
        spawn_local(async move {
            let r = api::call::<ep::RenewRecoveryCodes>((), &NoBody).await;
            report(factors_note, &r, |_| {
                "New recovery codes made; the old ones no longer work.".into()
            });
            if let Ok(r) = r {
                recovery.set(r.recovery_codes);
                reload();
            }
        });
    };

    view! {
        <section class="page">
            <h1>"Account"</h1>
            <Transition fallback=|| ()>
                <Show when=move || session.user().is_some_and(|m| m.mfa_enrolment_pending)>
                    <p class="card warn" id="mfa-required-notice" role="status">
                        "Your administrator requires a second factor for your account. Add an "
                        "authenticator app below to continue."
                    </p>
                </Show>
            </Transition>
            <section class="card">
                <h2>"Second factors"</h2>
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || match status.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) if e.is_unauthorized() => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    Some(Ok(s)) if s.credentials.is_empty() => view! {
                        <Empty text="No second factor yet. A second factor (an authenticator app or a security key) keeps the account safe when the password leaks; add one below."/>
                    }.into_any(),
                    Some(Ok(s)) => view! {
                        <p class="muted">
                            {if s.required { "Required for this account. " } else { "" }}
                            "Unused recovery codes: " <span id="recovery-left">{s.recovery_codes_left}</span>
                        </p>
                        <table class="table" id="factors">
                            <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Added"</th><th>"Last used"</th><th>"Actions"</th></tr></thead>
                            <tbody>
                                {s.credentials.into_iter().map(|c| {
                                    let id = c.id;
                                    view! {
                                        <tr>
                                            <td>{c.name}</td>
                                            <td>{if c.kind == FactorKind::Totp { "Authenticator app" } else { "Security key / passkey" }}</td>
                                            <td>{short_time(&c.created_at)}</td>
                                            <td>{maybe_time(c.last_used_at.as_deref())}</td>
                                            <td class="actions">
                                                <Confirm action="remove-factor" label="Remove"
                                                    question="Remove this second factor? It no longer signs you in."
                                                    confirm="Remove" danger=true on_confirm=move || remove(id)/>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }}
                </Transition>
                <span id="renew-recovery">
                    <Confirm action="renew-recovery" label="New recovery codes"
                        question="Make new recovery codes? The current ones stop working."
                        confirm="Make new codes" on_confirm=renew_codes/>
                </span>
                <NoticeLine notice=factors_note id="factors-notice"/>
            </section>

            <section class="card">
                <h2>"Add an authenticator app"</h2>
                <Show
                    when=move || enrolment.with(Option::is_some)
                    fallback=move || view! {
                        <form class="form" on:submit=start>
                            <Field id="totp-name" label="Name" value=name required=true/>
                            <FieldError notice=totp_note field="name"/>
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
                <NoticeLine notice=totp_note id="totp-notice" fields=&["name"]/>
            </section>

            <section class="card">
                <h2>"Add a security key or passkey"</h2>
                <form class="form" on:submit=add_key>
                    <Field id="key-name" label="Name" value=key_name required=true/>
                    <FieldError notice=key_note field="name"/>
                    <Submit id="key-add" label="Add security key"/>
                </form>
                <NoticeLine notice=key_note id="key-notice" fields=&["name"]/>
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
        </section>
    }
    .into_any()
}
