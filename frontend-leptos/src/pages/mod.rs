//! The pages. Each reads its data through [`crate::ui::data`] (resolved on the server while the
//! page renders, so it arrives with the HTML) and changes data through [`crate::api`] once it is
//! in the browser.

pub mod account;
pub mod admin;
pub mod audit;
pub mod fleet;
pub mod home;
pub mod jobs;
pub mod settings;
pub mod signin;
pub mod windows;
