//! One typed `Settings`, loaded from defaults, then an optional TOML file, then `GATEWAY_*` environment variables,
//! and validated before anything starts. Loading writes nothing and never changes the environment.

mod convert;
mod load;
mod schema;
mod validate;

pub use load::ignored_service_links;
pub use schema::*;

/// A configuration that cannot be used, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", describe(.0))]
    Load(Box<figment::Error>),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// `key: problem (from source)`, naming the exact environment variable when that is where the value came from.
fn describe(err: &figment::Error) -> String {
    let mut path: Vec<String> = err.path.iter().map(|p| p.to_lowercase()).collect();
    if let figment::error::Kind::UnknownField(field, _) = &err.kind
        && path.last() != Some(&field.to_lowercase())
    {
        path.push(field.to_lowercase());
    }
    let source = match &err.metadata {
        Some(metadata) if metadata.name.contains("environment") => {
            format!("environment variable GATEWAY_{}", path.join("_").to_uppercase())
        }
        Some(metadata) => match &metadata.source {
            Some(source) => source.to_string(),
            None => metadata.name.to_string(),
        },
        None => "configuration".to_owned(),
    };
    format!("{}: {} (from {source})", path.join("."), err.kind)
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

#[cfg(test)]
mod tests;
