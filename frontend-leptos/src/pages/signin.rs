//! First-run setup and sign-in (password, then the second factor when the account has one).

use crate::api;
use crate::app::Session;
use crate::ui::{ErrorLine, Submit};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use shared::api as ep;
use shared::auth::{
    ClientKind, LoginRequest, LoginResult, MfaChallenge, MfaLoginRequest, PasskeyLoginFinish,
    PasskeyLoginStart, SetupRequest,
};

/// A text input bound to a signal.
#[component]
pub fn Field(
    id: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = "")] autocomplete: &'static str,
    #[prop(optional)] required: bool,
) -> impl IntoView {
    view! {
        <label for=id>{label}</label>
        <input
            id=id
            name=id
            type=kind
            autocomplete=autocomplete
            required=required
            prop:value=move || value.get()
            on:input=move |ev| value.set(event_target_value(&ev))
        />
    }
    .into_any()
}

/// `/setup`: creates the first Admin with the one-time token from the manager's data directory.
#[component]
pub fn SetupPage() -> impl IntoView {
    let token = RwSignal::new(String::new());
    let username = RwSignal::new(String::new());
    let display = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let done = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    let status = crate::ui::load_on_mount::<ep::GetSetup>();
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if password.get_untracked() != confirm.get_untracked() {
            error.set(Some("The two passwords differ.".into()));
            return;
        }
        let body = SetupRequest {
            token: token.get_untracked().trim().to_owned(),
            username: username.get_untracked().trim().to_owned(),
            display_name: display.get_untracked(),
            password: password.get_untracked(),
        };
        let navigate = navigate.clone();
        busy.set(true);
        spawn_local(async move {
            match api::call::<ep::CompleteSetup>((), &body).await {
                Ok(_) => {
                    error.set(None);
                    done.set(true);
                    navigate("/login", Default::default());
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="page narrow">
            <h1>"First-run setup"</h1>
            <p class="muted">
                "Create the first administrator. The one-time setup token is in the manager's log "
                "and in the file " <code>"setup-token"</code> " in its data directory; it stops "
                "working once the administrator exists."
            </p>
            <Transition fallback=|| ()>
            <Show
                when=move || !done.get() && matches!(status.get(), Some(Ok(s)) if !s.required)
                fallback=move || view! { <SetupForm submit=submit.clone() token username display password confirm busy error done/> }
            >
                <p class="card ok" id="setup-complete" role="status">
                    "Setup is complete: an administrator exists. " <a href="/login">"Sign in"</a>
                </p>
            </Show>
            </Transition>
        </section>
    }
    .into_any()
}

/// The first-run form.
#[component]
#[allow(clippy::too_many_arguments)]
fn SetupForm(
    submit: impl Fn(SubmitEvent) + Clone + 'static,
    token: RwSignal<String>,
    username: RwSignal<String>,
    display: RwSignal<String>,
    password: RwSignal<String>,
    confirm: RwSignal<String>,
    busy: RwSignal<bool>,
    error: RwSignal<Option<String>>,
    done: RwSignal<bool>,
) -> impl IntoView {
    view! {
            <form class="card form" on:submit=submit>
                <Field id="setup-token" label="Setup token" value=token autocomplete="off" required=true/>
                <Field id="setup-username" label="User name" value=username autocomplete="username" required=true/>
                <Field id="setup-display" label="Display name (optional)" value=display autocomplete="name"/>
                <Field id="setup-password" label="Password (12 characters or more)" value=password kind="password" autocomplete="new-password" required=true/>
                <Field id="setup-password2" label="Password again" value=confirm kind="password" autocomplete="new-password" required=true/>
                <Submit id="setup-submit" label="Create administrator" busy=busy/>
                <ErrorLine error/>
                <Show when=move || done.get()>
                    <p class="ok" role="status">"Administrator created. " <a href="/login">"Sign in"</a></p>
                </Show>
            </form>
    }
    .into_any()
}

/// `/login`: password, then a code from the authenticator app or a recovery code.
#[component]
pub fn LoginPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let use_recovery = RwSignal::new(false);
    let challenge = RwSignal::new(None::<MfaChallenge>);
    let error = RwSignal::new(None::<String>);
    let sso = crate::ui::load_on_mount::<ep::OidcStatusGet>();
    // A fresh installation has nobody to sign in: first-run setup comes first.
    let setup = crate::ui::load_on_mount::<ep::GetSetup>();
    let setup_required = move || matches!(setup.get(), Some(Ok(s)) if s.required);
    // The server answers with a redirect; the browser (arriving here by a link) navigates.
    let setup_first = move || {
        #[cfg(feature = "ssr")]
        if setup_required() {
            crate::app::server_redirect("/setup");
        }
        #[cfg(not(feature = "ssr"))]
        let _ = setup_required();
    };
    {
        let navigate = use_navigate();
        Effect::new(move |_| {
            if setup_required() {
                navigate("/setup", Default::default());
            }
        });
    }
    let query = leptos_router::hooks::use_query_map();
    Effect::new(move |_| {
        if let Some(code) = query.with(|q| q.get("sso_error")) {
            error.set(Some(sso_message(&code).to_owned()));
        }
        // Back from single sign-on with a second factor still to give.
        if query.with(|q| q.get("sso_mfa").is_some()) {
            spawn_local(async move {
                match api::fetch::<ep::LoginPending>().await {
                    Ok(c) => {
                        username.set("your directory account".into());
                        challenge.set(Some(c));
                    }
                    Err(_) => error.set(Some(sso_message("expired").to_owned())),
                }
            });
        }
    });
    let busy = RwSignal::new(false);
    let navigate = use_navigate();

    let signed_in = {
        let navigate = navigate.clone();
        move || {
            let navigate = navigate.clone();
            spawn_local(async move {
                let me = session.reload().await;
                let to = if me.is_some_and(|m| m.mfa_enrolment_pending) {
                    "/account"
                } else {
                    "/"
                };
                navigate(to, Default::default());
            });
        }
    };

    let submit_password = {
        let signed_in = signed_in.clone();
        move |ev: SubmitEvent| {
            ev.prevent_default();
            let body = LoginRequest {
                username: username.get_untracked().trim().to_owned(),
                password: password.get_untracked(),
                client: ClientKind::Browser,
            };
            let signed_in = signed_in.clone();
            busy.set(true);
            spawn_local(async move {
                match api::call::<ep::Login>((), &body).await {
                    Ok(LoginResult::SignedIn(_)) => {
                        error.set(None);
                        signed_in();
                    }
                    Ok(LoginResult::MfaRequired(c)) => {
                        error.set(None);
                        password.set(String::new());
                        challenge.set(Some(c));
                    }
                    Err(e) => error.set(Some(e.message)),
                }
                busy.set(false);
            });
        }
    };

    let submit_code = {
        let signed_in = signed_in.clone();
        move |ev: SubmitEvent| {
            ev.prevent_default();
            let Some(c) = challenge.get_untracked() else {
                return;
            };
            let value = code.get_untracked().trim().to_owned();
            let body = if use_recovery.get_untracked() {
                MfaLoginRequest {
                    mfa_token: c.mfa_token,
                    code: None,
                    recovery_code: Some(value),
                }
            } else {
                MfaLoginRequest {
                    mfa_token: c.mfa_token,
                    code: Some(value),
                    recovery_code: None,
                }
            };
            let signed_in = signed_in.clone();
            busy.set(true);
            spawn_local(async move {
                match api::call::<ep::LoginMfa>((), &body).await {
                    Ok(LoginResult::SignedIn(_)) => {
                        error.set(None);
                        signed_in();
                    }
                    Ok(LoginResult::MfaRequired(_)) => {
                        error.set(Some("Another factor is needed.".into()))
                    }
                    Err(e) => {
                        code.set(String::new());
                        error.set(Some(e.message));
                    }
                }
                busy.set(false);
            });
        }
    };

    let use_key = {
        let signed_in = signed_in.clone();
        move |_| {
            let Some(c) = challenge.get_untracked() else {
                return;
            };
            let signed_in = signed_in.clone();
            busy.set(true);
            spawn_local(async move {
                let token = c.mfa_token.clone();
                let outcome = async {
                    let start = api::call::<ep::LoginWebauthnStart>(
                        (),
                        &PasskeyLoginStart {
                            mfa_token: token.clone(),
                        },
                    )
                    .await
                    .map_err(|e| e.message)?;
                    let credential = crate::webauthn::get(start.options).await?;
                    api::call::<ep::LoginWebauthnFinish>(
                        (),
                        &PasskeyLoginFinish {
                            mfa_token: token,
                            credential,
                        },
                    )
                    .await
                    .map_err(|e| e.message)
                }
                .await;
                match outcome {
                    Ok(LoginResult::SignedIn(_)) => {
                        error.set(None);
                        signed_in();
                    }
                    Ok(LoginResult::MfaRequired(_)) => {
                        error.set(Some("Another factor is needed.".into()))
                    }
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        }
    };
    let has_key = move || {
        challenge.with(|c| {
            c.as_ref()
                .is_some_and(|c| c.methods.iter().any(|m| m == "webauthn"))
        })
    };
    let has_app = move || {
        challenge.with(|c| {
            c.as_ref()
                .is_some_and(|c| c.methods.iter().any(|m| m == "totp"))
        })
    };

    view! {
        <section class="page narrow">
            <h1>"Sign in"</h1>
            <Transition fallback=|| ()>{setup_first}</Transition>
            <Show
                when=move || challenge.with(Option::is_some)
                fallback=move || view! {
                    <form class="card form" on:submit=submit_password.clone()>
                        <Field id="username" label="User name" value=username autocomplete="username" required=true/>
                        <Field id="password" label="Password" value=password kind="password" autocomplete="current-password" required=true/>
                        <Submit id="sign-in" label="Sign in" busy=busy/>
                        <ErrorLine error/>
                    </form>
                    <Transition fallback=|| ()>
                        {move || match sso.get() {
                            Some(Ok(s)) if s.enabled => view! {
                                <p class="card"><a id="sso" class="button" href="/api/v1/auth/oidc/start" rel="external">{s.label}</a></p>
                            }.into_any(),
                            _ => ().into_any(),
                        }}
                    </Transition>
                }
            >
                <div class="card form" style:display=move || if has_key() { "" } else { "none" }>
                    <p>"Second step for " <strong>{move || username.get()}</strong></p>
                    <button id="use-key" type="button" on:click=use_key.clone() disabled=move || busy.get()>
                        "Use my security key"
                    </button>
                </div>
                <form class="card form" on:submit=submit_code.clone()>
                    <p>{move || if has_app() { "Or a code:" } else { "Code:" }}</p>
                    <label for="mfa-code">
                        {move || if use_recovery.get() {
                            "One of your recovery codes"
                        } else {
                            "Six-digit code from your authenticator app"
                        }}
                    </label>
                    <input
                        id="mfa-code"
                        name="mfa-code"
                        autocomplete="one-time-code"
                        inputmode=move || if use_recovery.get() { "text" } else { "numeric" }
                        required=true
                        prop:value=move || code.get()
                        on:input=move |ev| code.set(event_target_value(&ev))
                    />
                    <Submit id="verify" label="Verify" busy=busy/>
                    <button id="use-recovery" type="button" class="link"
                        on:click=move |_| use_recovery.update(|r| *r = !*r)>
                        {move || if use_recovery.get() { "Use the app instead" } else { "Use a recovery code" }}
                    </button>
                    <ErrorLine error/>
                </form>
            </Show>
        </section>
    }
    .into_any()
}

/// What to tell the user when single sign-on sent them back (`/login?sso_error=…`).
fn sso_message(code: &str) -> &'static str {
    match code {
        "no_access" => "Your directory account is in no group that gives access to the manager. Ask an administrator.",
        "account_disabled" => "Your account is disabled in the manager.",
        "provider_unreachable" => "The identity provider cannot be reached. Local accounts still sign in here.",
        "provider_refused" => "The identity provider did not sign you in.",
        "sso_disabled" => "Single sign-on is turned off.",
        _ => "Single sign-on failed; please start again.",
    }
}
