//! `/settings` (Admins): Azure AD single sign-on and the manager's source-address allow-list.

use crate::api;
use crate::pages::signin::Field;
use crate::ui::{
    load_on_mount, notice, refuse, report, AdminOnly, FieldError, Note, NoticeLine, Submit,
};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api as ep;
use shared::auth::{OidcMapping, OidcSettings};
use shared::fleet::{AllowListSettings, PollingSettings};

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `value = role [group ids]` per line, e.g. `3f2a… = operator 1 2` or `b7c1… = admin`.
fn parse_mappings(text: &str) -> Result<Vec<OidcMapping>, String> {
    lines(text)
        .into_iter()
        .map(|l| {
            let (value, rest) = l
                .split_once('=')
                .ok_or_else(|| format!("\u{201c}{l}\u{201d}: write value = role [group ids]."))?;
            let mut words = rest.split_whitespace();
            let role = words.next().unwrap_or_default().to_owned();
            let group_ids = words
                .map(|w| {
                    w.parse::<i64>()
                        .map_err(|_| format!("\u{201c}{w}\u{201d} is not a group id."))
                })
                .collect::<Result<_, _>>()?;
            Ok(OidcMapping {
                value: value.trim().to_owned(),
                role,
                group_ids,
            })
        })
        .collect()
}

fn show_mappings(m: &[OidcMapping]) -> String {
    m.iter()
        .map(|m| {
            let ids: Vec<String> = m.group_ids.iter().map(i64::to_string).collect();
            format!("{} = {} {}", m.value, m.role, ids.join(" "))
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The settings page.
#[component]
pub fn SettingsPage() -> impl IntoView {
    let oidc_note = notice();
    let allow_note = notice();
    let poll_note = notice();

    // Single sign-on.
    let oidc = load_on_mount::<ep::GetOidcSettings>();
    let enabled = RwSignal::new(false);
    let tenant = RwSignal::new(String::new());
    let authority = RwSignal::new(String::new());
    let client_id = RwSignal::new(String::new());
    let secret = RwSignal::new(String::new());
    let redirect = RwSignal::new(String::new());
    let claim = RwSignal::new("groups".to_owned());
    let mappings = RwSignal::new(String::new());
    let secret_set = RwSignal::new(false);
    // A stored value that cannot be read is said here, on its card, never shown as defaults.
    let oidc_unreadable = move || match oidc.get() {
        Some(Err(e)) => Some(e.message),
        _ => None,
    };
    Effect::new(move |_| {
        if let Some(Ok(s)) = oidc.get() {
            enabled.set(s.enabled);
            tenant.set(s.tenant_id);
            authority.set(s.authority);
            client_id.set(s.client_id);
            redirect.set(if s.redirect_url.is_empty() {
                web_origin()
                    .map(|o| format!("{o}/api/v1/auth/oidc/callback"))
                    .unwrap_or_default()
            } else {
                s.redirect_url
            });
            claim.set(if s.claim.is_empty() {
                "groups".into()
            } else {
                s.claim
            });
            mappings.set(show_mappings(&s.mappings));
            secret_set.set(s.secret_set);
        }
    });
    let collect = move || -> Result<OidcSettings, String> {
        let s = secret.get_untracked();
        Ok(OidcSettings {
            enabled: enabled.get_untracked(),
            tenant_id: tenant.get_untracked().trim().to_owned(),
            authority: authority.get_untracked().trim().to_owned(),
            client_id: client_id.get_untracked().trim().to_owned(),
            client_secret: (!s.is_empty()).then_some(s),
            secret_set: false,
            redirect_url: redirect.get_untracked().trim().to_owned(),
            scopes: Vec::new(),
            claim: claim.get_untracked(),
            mappings: parse_mappings(&mappings.get_untracked())?,
            button_label: String::new(),
        })
    };
    let save_oidc = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = match collect() {
            Ok(b) => b,
            Err(e) => return refuse(oidc_note, e, Some("mappings")),
        };
        spawn_local(async move {
            let r = api::call::<ep::PutOidcSettings>((), &body).await;
            report(oidc_note, &r, |_| "Single sign-on settings saved.".into());
            if let Ok(s) = r {
                secret.set(String::new());
                secret_set.set(s.secret_set);
            }
        });
    };
    let test = move |_| {
        let body = match collect() {
            Ok(b) => b,
            Err(e) => return refuse(oidc_note, e, Some("mappings")),
        };
        oidc_note.set(Some(Note::Done("Contacting the identity provider…".into())));
        spawn_local(async move {
            let r = api::call::<ep::TestOidc>((), &body).await;
            report(oidc_note, &r, |r| {
                format!(
                    "Reached {}: {} signing key(s). Nothing was saved or enabled.",
                    r.issuer, r.keys
                )
            });
        });
    };

    // Allow-list.
    let allow = load_on_mount::<ep::GetAllowList>();
    let allow_on = RwSignal::new(false);
    let allow_text = RwSignal::new(String::new());
    let allow_unreadable = move || match allow.get() {
        Some(Err(e)) => Some(e.message),
        _ => None,
    };
    Effect::new(move |_| {
        if let Some(Ok(a)) = allow.get() {
            allow_on.set(a.enabled);
            allow_text.set(a.entries.join("\n"));
        }
    });
    let save_allow = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = AllowListSettings {
            enabled: allow_on.get_untracked(),
            entries: lines(&allow_text.get_untracked()),
        };
        spawn_local(async move {
            let r = api::call::<ep::PutAllowList>((), &body).await;
            report(allow_note, &r, |_| "Allow-list saved.".into());
        });
    };

    // Poll intervals.
    let polling = load_on_mount::<ep::GetPolling>();
    let health_secs = RwSignal::new(String::new());
    let inventory_secs = RwSignal::new(String::new());
    Effect::new(move |_| {
        if let Some(Ok(p)) = polling.get() {
            health_secs.set(p.health_interval_secs.to_string());
            inventory_secs.set(p.inventory_interval_secs.to_string());
        }
    });
    let save_polling = move |ev: SubmitEvent| {
        ev.prevent_default();
        let (Ok(health), Ok(inventory)) = (
            health_secs.get_untracked().trim().parse::<u64>(),
            inventory_secs.get_untracked().trim().parse::<u64>(),
        ) else {
            refuse(poll_note, "Intervals are whole numbers of seconds.", None);
            return;
        };
        let body = PollingSettings {
            health_interval_secs: health,
            inventory_interval_secs: inventory,
        };
        spawn_local(async move {
            let r = api::call::<ep::PutPolling>((), &body).await;
            report(poll_note, &r, |_| {
                "Poll intervals saved; every host follows them now.".into()
            });
        });
    };

    view! {
        <AdminOnly title="Settings">
        <section class="page">
            <h1>"Settings"</h1>
            <div class="grid">
                <form class="card form" on:submit=save_oidc>
                    <h2>"Azure AD single sign-on"</h2>
                    <Transition fallback=|| ()>
                        {move || oidc_unreadable().map(|m| view! { <p class="error" role="alert" data-testid="oidc-load-error">{m}</p> })}
                    </Transition>
                    <label class="check">
                        <input type="checkbox" id="oidc-enabled" prop:checked=move || enabled.get()
                            on:change=move |ev| enabled.set(event_target_checked(&ev))/>
                        "Offer “Sign in with Microsoft”"
                    </label>
                    <Field id="oidc-tenant" label="Directory (tenant) id" value=tenant/>
                    <Field id="oidc-authority" label="Authority URL (only if not Azure AD)" value=authority/>
                    <Field id="oidc-client" label="Application (client) id" value=client_id/>
                    <label for="oidc-secret">
                        {move || if secret_set.get() { "Client secret (stored; type to replace)" } else { "Client secret" }}
                    </label>
                    <input id="oidc-secret" type="password" autocomplete="off"
                        prop:value=move || secret.get() on:input=move |ev| secret.set(event_target_value(&ev))/>
                    <Field id="oidc-redirect" label="Redirect URI (register it in Azure AD)" value=redirect/>
                    <label for="oidc-claim">"Claim"</label>
                    <select id="oidc-claim" prop:value=move || claim.get() on:change=move |ev| claim.set(event_target_value(&ev))>
                        <option value="groups">"groups (group object ids)"</option>
                        <option value="roles">"roles (app roles)"</option>
                    </select>
                    <label for="oidc-mappings">"Access: one per line, “value = admin” or “value = operator group-id …”. Users matching none get no access."</label>
                    <textarea id="oidc-mappings" rows="5" prop:value=move || mappings.get()
                        on:input=move |ev| mappings.set(event_target_value(&ev))></textarea>
                    <FieldError notice=oidc_note field="mappings"/>
                    <div class="row">
                        <Submit id="oidc-save" label="Save"/>
                        <button type="button" id="oidc-test" on:click=test>"Test connection"</button>
                    </div>
                    <NoticeLine notice=oidc_note id="oidc-notice" fields=&["mappings"]/>
                    <p class="muted">"Local accounts keep working when the identity provider is down."</p>
                </form>
                <form class="card form" on:submit=save_allow>
                    <h2>"Allowed source addresses"</h2>
                    <Transition fallback=|| ()>
                        {move || allow_unreadable().map(|m| view! { <p class="error" role="alert" data-testid="allow-load-error">{m}</p> })}
                    </Transition>
                    <label class="check">
                        <input type="checkbox" id="allow-enabled" prop:checked=move || allow_on.get()
                            on:change=move |ev| allow_on.set(event_target_checked(&ev))/>
                        "Refuse every address not listed"
                    </label>
                    <label for="allow-entries">"Addresses and ranges, one per line (10.0.0.0/8, 2001:db8::/32)"</label>
                    <textarea id="allow-entries" rows="6" prop:value=move || allow_text.get()
                        on:input=move |ev| allow_text.set(event_target_value(&ev))></textarea>
                    <FieldError notice=allow_note field="entries"/>
                    <Submit id="allow-save" label="Save"/>
                    <NoticeLine notice=allow_note id="allow-notice" fields=&["entries"]/>
                    <p class="muted">
                        "Your own address must be listed. Locked out anyway? On the server: "
                        <code>"patch-manager allow-list --disable"</code>
                    </p>
                </form>
                <form class="card form" on:submit=save_polling>
                    <h2>"Polling"</h2>
                    <Transition fallback=|| ()>
                        {move || match polling.get() {
                            Some(Err(e)) => Some(view! { <p class="error" role="alert" data-testid="polling-load-error">{e.message}</p> }),
                            _ => None,
                        }}
                    </Transition>
                    <Field id="poll-health" label="Health check every (seconds, 10 to 86400)" value=health_secs kind="number"/>
                    <Field id="poll-inventory" label="Packages and updates every (seconds, 60 to 604800)" value=inventory_secs kind="number"/>
                    <Submit id="polling-save" label="Save"/>
                    <NoticeLine notice=poll_note id="polling-notice"/>
                    <p class="muted">"Each host is polled at its own moment within the interval, so a large fleet is never polled all at once."</p>
                </form>
            </div>
        </section>
        </AdminOnly>
    }
    .into_any()
}

/// `https://host:port` of the page, for the default redirect URI.
fn web_origin() -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window().and_then(|w| w.location().origin().ok())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_round_trip() {
        let m = parse_mappings("abc = admin\n\n def = operator 1 2 \n").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].group_ids, vec![1, 2]);
        assert_eq!(show_mappings(&m), "abc = admin\ndef = operator 1 2");
        assert!(parse_mappings("no equals sign").is_err());
        assert!(parse_mappings("x = operator one").is_err());
    }
}
