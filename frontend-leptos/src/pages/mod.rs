//! The pages. Each reads and changes data through [`crate::api`] once it is in the browser.

pub mod account;
pub mod admin;
pub mod fleet;
pub mod home;
pub mod jobs;
pub mod settings;
pub mod signin;
pub mod windows;
