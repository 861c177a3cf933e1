//! `/users` (Admins): accounts, their role, groups and second-factor requirement; create,
//! disable, reset MFA, end sessions, delete; and host groups.

use crate::api;
use crate::pages::signin::Field;
use crate::ui::{
    load_on_mount, maybe_time, notice, report, AdminOnly, Confirm, Empty, FieldError, Notice,
    NoticeLine, Submit,
};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{self as ep, NoBody};
use shared::fleet::{GroupUpdate, NewGroup, NewUser, UserUpdate};
use shared::ids::{GroupId, UserId};
use shared::vocab::Role;

/// The users page.
#[component]
pub fn UsersPage() -> impl IntoView {
    let users = load_on_mount::<ep::ListUsers>();
    let groups = load_on_mount::<ep::ListGroups>();
    let reload = move || {
        users.refetch();
        groups.refetch();
    };
    // One message slot per place something is done: the users table, the new-user form and the
    // groups card.
    let users_note = notice();
    let user_form = notice();
    let groups_note = notice();

    type Call = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), api::ApiError>>>>;
    let act = move |target: Notice, what: &'static str, fut: Call, on_ok: Box<dyn FnOnce()>| {
        spawn_local(async move {
            let r = fut.await;
            report(target, &r, |()| what.to_owned());
            if r.is_ok() {
                on_ok();
                reload();
            }
        });
    };
    let update = move |id: UserId, body: UserUpdate, what: &'static str| {
        act(
            users_note,
            what,
            Box::pin(async move { api::call::<ep::UpdateUser>(id, &body).await.map(|_| ()) }),
            Box::new(|| ()),
        );
    };
    let reset_mfa = move |id: UserId| {
        act(
            users_note,
            "Second factors removed; the user enrols again at the next sign-in.",
            Box::pin(async move { api::call::<ep::ResetUserMfa>(id, &NoBody).await.map(|_| ()) }),
            Box::new(|| ()),
        );
    };
    let sign_out = move |id: UserId| {
        act(
            users_note,
            "Sessions ended.",
            Box::pin(async move { api::call::<ep::LogoutUser>(id, &NoBody).await.map(|_| ()) }),
            Box::new(|| ()),
        );
    };
    let remove = move |id: UserId| {
        act(
            users_note,
            "User deleted.",
            Box::pin(async move { api::call::<ep::DeleteUser>(id, &NoBody).await.map(|_| ()) }),
            Box::new(|| ()),
        );
    };

    // New user form.
    let username = RwSignal::new(String::new());
    let display = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Operator);
    let mfa_required = RwSignal::new(false);
    let chosen = RwSignal::new(Vec::<GroupId>::new());
    let create = move |ev: SubmitEvent| {
        ev.prevent_default();
        let e = email.get_untracked();
        let body = NewUser {
            username: username.get_untracked().trim().to_owned(),
            display_name: display.get_untracked(),
            email: (!e.trim().is_empty()).then(|| e.trim().to_owned()),
            password: password.get_untracked(),
            role: role.get_untracked(),
            group_ids: chosen.get_untracked(),
            mfa_required: mfa_required.get_untracked(),
        };
        act(
            user_form,
            "User created.",
            Box::pin(async move { api::call::<ep::CreateUser>((), &body).await.map(|_| ()) }),
            // The whole form is cleared for the next one.
            Box::new(move || {
                username.set(String::new());
                display.set(String::new());
                email.set(String::new());
                password.set(String::new());
                role.set(Role::Operator);
                mfa_required.set(false);
                chosen.set(Vec::new());
            }),
        );
    };
    let group_name = RwSignal::new(String::new());
    let create_group = move |ev: SubmitEvent| {
        ev.prevent_default();
        let body = NewGroup {
            name: group_name.get_untracked().trim().to_owned(),
            description: String::new(),
        };
        act(
            groups_note,
            "Group created.",
            Box::pin(async move { api::call::<ep::CreateGroup>((), &body).await.map(|_| ()) }),
            Box::new(move || group_name.set(String::new())),
        );
    };
    let renaming = RwSignal::new(None::<GroupId>);
    let new_name = RwSignal::new(String::new());
    let confirm_group = RwSignal::new(None::<GroupId>);
    let rename_group = move |id: GroupId| {
        let body = GroupUpdate {
            name: Some(new_name.get_untracked()),
            description: None,
        };
        renaming.set(None);
        act(
            groups_note,
            "Group renamed.",
            Box::pin(async move { api::call::<ep::UpdateGroup>(id, &body).await.map(|_| ()) }),
            Box::new(|| ()),
        );
    };
    let delete_group = move |id: GroupId| {
        confirm_group.set(None);
        act(
            groups_note,
            "Group deleted; its hosts stay in their other groups.",
            Box::pin(async move { api::call::<ep::DeleteGroup>(id, &NoBody).await.map(|_| ()) }),
            Box::new(|| ()),
        );
    };
    let group_names = move |ids: &[GroupId]| -> String {
        groups.with(|g| match g {
            Some(Ok(g)) => ids
                .iter()
                .filter_map(|id| g.iter().find(|x| x.id == *id).map(|x| x.name.clone()))
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        })
    };

    view! {
        <AdminOnly title="Users">
        <section class="page">
            <h1>"Users"</h1>
            <section class="card">
                <NoticeLine notice=users_note id="users-notice"/>
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || match users.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    Some(Ok(list)) => view! {
                        <table class="table" id="users">
                            <thead><tr>
                                <th>"User"</th><th>"Role"</th><th>"Groups"</th><th>"Second factor"</th>
                                <th>"Status"</th><th>"Last sign-in"</th><th>"Actions"</th>
                            </tr></thead>
                            <tbody>
                            {list.into_iter().map(|u| {
                                let id = u.id;
                                let disabled = u.disabled;
                                let required = u.mfa_required;
                                let is_admin = u.role == Role::Admin;
                                view! {
                                    <tr data-user=u.username.clone()>
                                        <td><strong>{u.username.clone()}</strong><br/><span class="muted">{u.display_name.clone()}</span></td>
                                        <td>{role_label(u.role)}</td>
                                        <td>{if is_admin { "all".to_owned() } else { group_names(&u.group_ids) }}</td>
                                        <td>
                                            {format!("{} enrolled", u.mfa_factors)}
                                            {required.then_some(" · required")}
                                        </td>
                                        <td class=if disabled { "bad" } else { "ok" }>
                                            {if disabled { "disabled" } else { "active" }}
                                            {u.locked_until.as_ref().map(|t| format!(" · locked until {}", maybe_time(Some(t))))}
                                        </td>
                                        <td>{maybe_time(u.last_login_at.as_deref())}</td>
                                        <td class="actions">
                                            <button type="button" on:click=move |_| update(id, UserUpdate { disabled: Some(!disabled), ..Default::default() }, if disabled { "Enabled." } else { "Disabled." })>
                                                {if disabled { "Enable" } else { "Disable" }}
                                            </button>
                                            <button type="button" on:click=move |_| update(id, UserUpdate { mfa_required: Some(!required), ..Default::default() }, "MFA requirement changed.")>
                                                {if required { "Don't require MFA" } else { "Require MFA" }}
                                            </button>
                                            <button type="button" on:click=move |_| update(id, UserUpdate { role: Some(if is_admin { Role::Operator } else { Role::Admin }), ..Default::default() }, "Role changed.")>
                                                {if is_admin { "Make Operator" } else { "Make Admin" }}
                                            </button>
                                            <Confirm action="reset-mfa" label="Reset MFA"
                                                question="Remove every second factor of this user? They enrol a new one at their next sign-in."
                                                confirm="Reset MFA" on_confirm=move || reset_mfa(id)/>
                                            <Confirm action="sign-out" label="Sign out everywhere"
                                                question="End every session of this user now?"
                                                confirm="Sign out" on_confirm=move || sign_out(id)/>
                                            <Confirm action="delete" label="Delete"
                                                question="Delete this user for good? Their sessions end; the audit log keeps their history."
                                                confirm="Delete user" danger=true on_confirm=move || remove(id)/>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }}
                </Transition>
            </section>
            <div class="grid">
                <form class="card form" on:submit=create id="new-user">
                    <h2>"New user"</h2>
                    <Field id="new-username" label="User name" value=username autocomplete="off" required=true/>
                    <FieldError notice=user_form field="username"/>
                    <Field id="new-display" label="Display name" value=display autocomplete="off"/>
                    <FieldError notice=user_form field="display_name"/>
                    <Field id="new-email" label="E-mail" value=email kind="email" autocomplete="off"/>
                    <FieldError notice=user_form field="email"/>
                    <Field id="new-password" label="Initial password" value=password kind="password" autocomplete="new-password" required=true/>
                    <FieldError notice=user_form field="password"/>
                    <label for="new-role">"Role"</label>
                    <select id="new-role" on:change=move |ev| if let Ok(r) = event_target_value(&ev).parse() { role.set(r) } prop:value=move || role.get().as_str()>
                        <option value=Role::Operator.as_str()>"Operator (hosts of their groups)"</option>
                        <option value=Role::Admin.as_str()>"Admin (everything)"</option>
                    </select>
                    <fieldset>
                        <legend>"Groups"</legend>
                        <Transition fallback=|| ()>
                            {move || match groups.get() {
                                Some(Ok(g)) => g.into_iter().map(|g| {
                                    let id = g.id;
                                    view! {
                                        <label class="check">
                                            <input type="checkbox" prop:checked=move || chosen.with(|c| c.contains(&id))
                                                on:change=move |ev| {
                                                    let on = event_target_checked(&ev);
                                                    chosen.update(|c| { c.retain(|x| *x != id); if on { c.push(id) } });
                                                }/>
                                            {g.name}
                                        </label>
                                    }
                                }).collect_view().into_any(),
                                _ => view! { <span class="muted">"No groups yet."</span> }.into_any(),
                            }}
                        </Transition>
                    </fieldset>
                    <label class="check">
                        <input type="checkbox" id="new-mfa" prop:checked=move || mfa_required.get()
                            on:change=move |ev| mfa_required.set(event_target_checked(&ev))/>
                        "Require a second factor"
                    </label>
                    <Submit id="create-user" label="Create user"/>
                    <NoticeLine notice=user_form id="new-user-notice" fields=&["username", "display_name", "email", "password"]/>
                </form>
                <form class="card form" on:submit=create_group>
                    <h2>"Host groups"</h2>
                    <Transition fallback=|| ()>
                        {move || match groups.get() {
                            Some(Ok(list)) if !list.is_empty() => view! {
                                <table class="table" id="groups">
                                    <thead><tr><th>"Group"</th><th>"Hosts"</th><th>"Actions"</th></tr></thead>
                                    <tbody>
                                    {list.into_iter().map(|g| {
                                        let id = g.id;
                                        let name = g.name.clone();
                                        let current = g.name.clone();
                                        view! {
                                            <tr data-group=g.name.clone()>
                                                <td>{move || if renaming.get() == Some(id) {
                                                    view! {
                                                        <input aria-label="New name" prop:value=move || new_name.get()
                                                            on:input=move |ev| new_name.set(event_target_value(&ev))/>
                                                    }.into_any()
                                                } else {
                                                    view! { <span>{name.clone()}</span> }.into_any()
                                                }}</td>
                                                <td>{g.hosts}</td>
                                                <td class="actions">
                                                    {move || if renaming.get() == Some(id) {
                                                        view! {
                                                            <button type="button" on:click=move |_| rename_group(id)>"Save"</button>
                                                            <button type="button" on:click=move |_| renaming.set(None)>"Cancel"</button>
                                                        }.into_any()
                                                    } else if confirm_group.get() == Some(id) {
                                                        view! {
                                                            <span class="warn">"Its hosts stay; its Operators lose access to them. "</span>
                                                            <button type="button" class="danger" on:click=move |_| delete_group(id)>"Delete"</button>
                                                            <button type="button" on:click=move |_| confirm_group.set(None)>"Cancel"</button>
                                                        }.into_any()
                                                    } else {
                                                        let current = current.clone();
                                                        view! {
                                                            <button type="button" on:click=move |_| { new_name.set(current.clone()); renaming.set(Some(id)); }>"Rename…"</button>
                                                            <button type="button" class="danger" on:click=move |_| confirm_group.set(Some(id))>"Delete…"</button>
                                                        }.into_any()
                                                    }}
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                    </tbody>
                                </table>
                            }.into_any(),
                            Some(Ok(_)) => view! {
                                <Empty text="No groups yet. Groups gather hosts: an Operator sees and patches the hosts of their groups, and a deployment or window can target a group. Name the first one below."/>
                            }.into_any(),
                            _ => ().into_any(),
                        }}
                    </Transition>
                    <Field id="new-group" label="New group" value=group_name required=true/>
                    <FieldError notice=groups_note field="name"/>
                    <Submit id="create-group" label="Create group"/>
                    <NoticeLine notice=groups_note id="groups-notice" fields=&["name"]/>
                </form>
            </div>
        </section>
        </AdminOnly>
    }
    .into_any()
}

/// How a role reads in the users table.
fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "Admin",
        Role::Operator => "Operator",
    }
}
