//! Maintenance windows: when a host may be patched. A window belongs to one host, or to a group
//! (every member, present and future); it recurs in its own IANA time zone.

use crate::ids::{GroupId, HostId, WindowId};
use serde::{Deserialize, Serialize};

/// How a window recurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Recurrence {
    /// Once, on its start date.
    Once,
    /// Every day from its start date.
    Daily,
    /// Every week on its weekday.
    Weekly,
    /// Every month on its day of the month (months without that day are skipped).
    Monthly,
}

impl Recurrence {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "once",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }
}

impl std::str::FromStr for Recurrence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "once" => Self::Once,
            "daily" => Self::Daily,
            "weekly" => Self::Weekly,
            "monthly" => Self::Monthly,
            other => return Err(format!("unknown recurrence {other}")),
        })
    }
}

/// When a window opens and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Name shown.
    pub name: String,
    /// How it recurs.
    pub recurrence: Recurrence,
    /// IANA time zone (`Europe/Berlin`, `UTC`).
    pub time_zone: String,
    /// First day (`YYYY-MM-DD`, local), the only one for `once`.
    pub start_date: String,
    /// Local time it opens (`HH:MM`, or `HH:MM:SS`).
    pub start_time: String,
    /// How long it stays open, in minutes.
    pub duration_minutes: u32,
    /// For `weekly`: 1 (Monday) to 7 (Sunday).
    #[serde(default)]
    pub weekday: Option<u8>,
    /// For `monthly`: 1 to 31.
    #[serde(default)]
    pub day_of_month: Option<u8>,
    /// A disabled window never opens.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// `POST /api/v1/windows`: a window for one host or for a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    /// The host it is for (or `group_id`).
    #[serde(default)]
    pub host_id: Option<HostId>,
    /// The group it is for: every member, present and future (or `host_id`).
    #[serde(default)]
    pub group_id: Option<GroupId>,
    /// When.
    pub window: WindowSpec,
}

/// A window as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WindowInfo {
    /// Id.
    pub id: WindowId,
    /// Its host, if it is a host's.
    pub host_id: Option<HostId>,
    /// Its group, if it is a group's.
    pub group_id: Option<GroupId>,
    /// The host's or group's name.
    pub applies_to: String,
    /// When.
    pub window: WindowSpec,
    /// It is open now.
    pub open_now: bool,
    /// The next (or current) opening (RFC 3339), if it opens again.
    pub next_open: Option<String>,
    /// Its closing.
    pub next_close: Option<String>,
}
