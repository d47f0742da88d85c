//! Form values as the console's forms send them: blank inputs are absent, ids are parsed once.

use serde::{Deserialize, Deserializer};

use crate::error::ConsoleError;

/// An optional text input: the empty string (an input left blank) is `None`.
pub fn blank_is_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()))
}

/// An id from a path or a field; a malformed one is *not found*, as in the API.
pub fn id<T: std::str::FromStr>(raw: &str) -> Result<T, ConsoleError> {
    raw.parse().map_err(|_| ConsoleError::NotFound)
}
