//! First run: when no active operator exists, create one, so a fresh install can be administered at once.

use gw_accounts::PasswordHasherService;
use gw_core::{Email, UserRole};
use gw_store::{Actor, NewUser, Store};

use crate::config::AdminSettings;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("admin.email: {0}")]
    Email(String),
    #[error("admin.password: {0}")]
    WeakPassword(String),
    #[error("could not create the first operator: {0}")]
    Store(#[from] gw_store::StoreError),
    #[error("could not hash the operator password: {0}")]
    Hash(String),
}

/// A password for the first operator: 24 characters from an alphabet without look-alikes (about 140 bits).
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..24).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// Creates the first operator if there is none. Returns the generated password when one was generated, so the
/// caller can show it once.
pub async fn ensure_operator(
    store: &dyn Store,
    admin: &AdminSettings,
) -> Result<Option<(String, String)>, BootstrapError> {
    if store.count_active_admins().await? > 0 {
        return Ok(None);
    }
    let email = Email::parse(&admin.email).map_err(|e| BootstrapError::Email(e.to_string()))?;
    let (password, generated) = match &admin.password {
        Some(configured) => {
            gw_accounts::password::check_policy(configured.expose(), email.as_str())
                .map_err(|e| BootstrapError::WeakPassword(e.to_string()))?;
            (configured.expose().to_owned(), false)
        }
        None => (generate_password(), true),
    };
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || PasswordHasherService::owasp().hash(&to_hash))
        .await
        .map_err(|e| BootstrapError::Hash(e.to_string()))?
        .map_err(|e| BootstrapError::Hash(e.to_string()))?;
    store
        .create_user(
            NewUser {
                email: email.clone(),
                password: hash,
                name: "Operator".into(),
                role: UserRole::Admin,
                subscription_id: None,
            },
            &Actor::system(),
        )
        .await?;
    tracing::info!(email = %email, "created the first operator");
    Ok(generated.then(|| (email.to_string(), password)))
}

#[cfg(test)]
mod tests {
    use super::generate_password;

    #[test]
    fn generated_passwords_pass_the_policy() {
        let password = generate_password();
        assert_eq!(password.len(), 24);
        assert!(gw_accounts::password::check_policy(&password, "admin@gateway.local").is_ok());
        assert_ne!(password, generate_password());
    }
}
