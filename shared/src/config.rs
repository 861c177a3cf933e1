//! Layered configuration loading shared by the manager and the agent (feature `config`).
//!
//! Layers are merged as TOML trees — defaults, file, then `key=value` overrides from the
//! environment and the command line — before one strict deserialisation, so an unknown or misspelt
//! key is an error naming that key whichever layer it came from. Override values are strings,
//! converted to the type the key has in the defaults: `…__POOL_SIZE=4` becomes a number while a
//! password made of digits stays a string.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// File that failed.
        path: PathBuf,
        /// Parser message, with line and column.
        message: String,
    },
    /// An override (environment variable or `--set`) is malformed or has the wrong type.
    #[error("configuration override {origin}: {message}")]
    Override {
        /// Where the override came from (variable name or flag).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("invalid configuration key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key (`server.listen`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// One `key=value` override, from the environment or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Dotted key path, e.g. `server.listen`.
    pub key: String,
    /// Raw value, converted to the key's type when merged.
    pub value: String,
    /// Where it came from, for error messages.
    pub origin: String,
}

impl Override {
    /// Parses a `--set section.key=value` argument.
    pub fn from_cli(arg: &str) -> Result<Self, ConfigError> {
        let (key, value) = arg.split_once('=').ok_or_else(|| ConfigError::Override {
            origin: format!("--set {arg}"),
            message: "expected section.key=value".into(),
        })?;
        Ok(Self {
            key: key.trim().to_owned(),
            value: value.to_owned(),
            origin: format!("--set {key}"),
        })
    }

    /// Collects `<PREFIX>SECTION__KEY` variables (e.g. `PATCH_MANAGER__SERVER__LISTEN`) from an
    /// environment listing, sorted by name so the order is deterministic.
    pub fn from_env(prefix: &str, vars: impl IntoIterator<Item = (String, String)>) -> Vec<Self> {
        let mut out: Vec<Self> = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix(prefix)?;
                let key = rest
                    .split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join(".");
                Some(Self {
                    key,
                    value,
                    origin: name,
                })
            })
            .collect();
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        out
    }
}

/// Builds a configuration of type `T` from its layers: `T::default()`, then `file` if given, then
/// `overrides` in order (environment first, then command-line flags). Range checks that types
/// cannot express are the caller's (`validate` on the config type).
pub fn load_layers<T>(file: Option<&Path>, overrides: &[Override]) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let defaults = toml::Table::try_from(T::default()).map_err(|e| ConfigError::Invalid {
        key: "(defaults)".into(),
        message: e.to_string(),
    })?;
    let mut merged = defaults.clone();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
        merge(&mut merged, table);
    }
    for o in overrides {
        apply_override(&mut merged, &defaults, o)?;
    }
    serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let key = if path == "." {
            "(top level)".to_owned()
        } else {
            path
        };
        // The path usually ends at the unknown field; when it stops at the parent section, the
        // field is only named in the message, so append it.
        let key = match unknown_field_name(&inner) {
            Some(field) if key == "(top level)" => field,
            Some(field) if !key.ends_with(&format!(".{field}")) && key != field => {
                format!("{key}.{field}")
            }
            _ => key,
        };
        ConfigError::Invalid {
            key,
            message: inner.trim().to_owned(),
        }
    })
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_owned())
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (k, v) in layer {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn apply_override(
    merged: &mut toml::Table,
    defaults: &toml::Table,
    o: &Override,
) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Override {
        origin: o.origin.clone(),
        message,
    };
    let parts: Vec<&str> = o.key.split('.').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(err(format!("`{}` is not a section.key name", o.key)));
    }
    let (section, key) = (parts[0], parts[1]);
    let Some(toml::Value::Table(def_section)) = defaults.get(section) else {
        return Err(ConfigError::Invalid {
            key: o.key.clone(),
            message: format!("unknown section `{section}`"),
        });
    };
    let value = match def_section.get(key) {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            o.value
                .trim()
                .parse()
                .map_err(|_| err(format!("`{}` is not an integer", o.value)))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            o.value
                .trim()
                .parse()
                .map_err(|_| err(format!("`{}` is not true or false", o.value)))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            o.value
                .trim()
                .parse()
                .map_err(|_| err(format!("`{}` is not a number", o.value)))?,
        ),
        Some(toml::Value::Array(_)) => {
            let wrapped: toml::Table = format!("v = {}", o.value)
                .parse()
                .map_err(|_| err(format!("`{}` is not a TOML array", o.value)))?;
            wrapped
                .get("v")
                .cloned()
                .ok_or_else(|| err("empty array".into()))?
        }
        Some(_) => toml::Value::String(o.value.clone()),
        None => {
            return Err(ConfigError::Invalid {
                key: o.key.clone(),
                message: format!("unknown key `{key}` in section `{section}`"),
            })
        }
    };
    match merged
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(t) => {
            t.insert(key.to_owned(), value);
            Ok(())
        }
        _ => Err(err(format!("`{section}` is not a section"))),
    }
}
