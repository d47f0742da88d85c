//! First run: when no active operator exists, create one, so a fresh install can be administered at once; when the
//! secrets (JWT key, API key pepper, session encryption key) are not configured, generate them once and keep them
//! with the data, so the zero-configuration default is also a secure one.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use gw_accounts::PasswordHasherService;
use gw_core::{Email, UserRole};
use gw_store::{Actor, NewUser, Store};

use crate::config::{AdminSettings, Secret, Settings};

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

/// The secrets cannot be taken from the data directory. A file that exists is never overwritten: the operator must
/// look at it.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot create the secrets directory {}: {source}", .path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write the generated secret {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the secret {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the secret {} is readable by other users (mode {mode:o}); make it private with `chmod 600`",
        .path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the secret {} is not usable as {key}: {message}", .path.display())]
    Invalid { path: PathBuf, key: &'static str, message: String },
}

/// Where the generated secrets live: `secrets/` in the data directory, one file per configuration key.
pub fn secrets_dir(settings: &Settings) -> PathBuf {
    settings.data_dir().join("secrets")
}

/// What [`ensure_secrets`] did, for the start-up log.
#[derive(Debug, Default)]
pub struct SecretsReport {
    pub dir: PathBuf,
    /// Keys whose secret was generated now (first run).
    pub generated: Vec<&'static str>,
    /// Keys whose secret was read from a file generated on an earlier run.
    pub loaded: Vec<&'static str>,
}

/// Fills every unset secret from its file in [`secrets_dir`], generating the file first when there is none.
/// Configured secrets win and leave their files alone. Files are created with mode 0600 in a 0700 directory and are
/// never overwritten; a file that others may read, or that does not hold a usable secret, stops the start.
pub fn ensure_secrets(settings: &mut Settings) -> Result<SecretsReport, SecretsError> {
    let dir = secrets_dir(settings);
    let mut report = SecretsReport { dir: dir.clone(), ..SecretsReport::default() };
    let unset: Vec<&'static str> =
        settings.secrets().into_iter().filter(|(_, secret)| secret.is_unset()).map(|(key, _)| key).collect();
    if unset.is_empty() {
        return Ok(report);
    }
    create_private_dir(&dir)?;
    for key in unset {
        let path = dir.join(key);
        let value = match read_secret(&path)? {
            Some(value) => {
                report.loaded.push(key);
                value
            }
            None => {
                let value = write_new_secret(&dir, &path)?;
                report.generated.push(key);
                value
            }
        };
        if let Some(slot) = settings.secret_mut(key) {
            *slot = Secret::new(value);
        }
        check_secret(settings, key).map_err(|message| SecretsError::Invalid { path: path.clone(), key, message })?;
    }
    Ok(report)
}

/// 32 random bytes from the OS generator, base64: valid for all three keys (the session key must decode to exactly
/// 32 bytes; the JWT key and pepper must be at least 32 bytes long, and 44 characters are).
fn generate_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The same checks a configured value gets, applied to a value read from a file.
fn check_secret(settings: &Settings, key: &'static str) -> Result<(), String> {
    if key == "sessions.encryption_key" {
        return settings.session_key().map(drop).map_err(|e| e.to_string());
    }
    let len = settings.secrets().into_iter().find(|(k, _)| *k == key).map_or(0, |(_, secret)| secret.expose().len());
    if len < gw_accounts::jwt::MIN_KEY_BYTES {
        return Err(format!("must be at least {} bytes", gw_accounts::jwt::MIN_KEY_BYTES));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), SecretsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| SecretsError::CreateDir { path: dir.to_owned(), source })
}

/// The secret in `path`, or `None` when there is no such file yet.
fn read_secret(path: &Path) -> Result<Option<String>, SecretsError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SecretsError::Read { path: path.to_owned(), source }),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)
            .map_err(|source| SecretsError::Read { path: path.to_owned(), source })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(SecretsError::Exposed { path: path.to_owned(), mode: mode & 0o777 });
        }
    }
    Ok(Some(text.trim().to_owned()))
}

/// Writes a fresh secret to `path` without ever exposing a partial file: the value goes to a private temporary file
/// first, which is then hard-linked into place. The link fails if `path` exists, so when several nodes start at
/// once on the same data directory exactly one secret wins and every node reads that one.
fn write_new_secret(dir: &Path, path: &Path) -> Result<String, SecretsError> {
    let write_err = |source| SecretsError::Write { path: path.to_owned(), source };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("secret");
    let temporary = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let value = generate_secret();
    let written = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(value.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::hard_link(&temporary, path)
    })();
    let _ = fs::remove_file(&temporary);
    match written {
        Ok(()) => {
            // The link is durable only once the directory entry is: a crash must not lose a secret already used.
            if let Ok(dir) = fs::File::open(dir) {
                let _ = dir.sync_all();
            }
            Ok(value)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => read_secret(path)?.ok_or_else(|| write_err(err)),
        Err(err) => Err(write_err(err)),
    }
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
    use super::*;

    #[test]
    fn generated_passwords_pass_the_policy() {
        let password = generate_password();
        assert_eq!(password.len(), 24);
        assert!(gw_accounts::password::check_policy(&password, "admin@gateway.local").is_ok());
        assert_ne!(password, generate_password());
    }

    fn settings_in(dir: &Path) -> Settings {
        Settings { data_dir: dir.display().to_string(), ..Settings::default() }
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gw-secrets-{}", rand::random::<u64>()));
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_generated_private_once_and_read_back() {
        let dir = temp_dir();
        let mut first = settings_in(&dir);
        let report = ensure_secrets(&mut first).expect("generate");
        assert_eq!(report.generated, vec!["auth.jwt_secret", "auth.api_key_pepper", "sessions.encryption_key"]);
        assert!(report.loaded.is_empty());
        first.session_key().expect("a usable session key");
        let values: Vec<String> = first.secrets().iter().map(|(_, s)| s.expose().to_owned()).collect();
        assert!(values.iter().all(|v| v.len() >= 32), "{}", values.len());
        assert_ne!(values[0], values[1], "each secret is drawn on its own");
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join("secrets")), 0o700);
            for key in ["auth.jwt_secret", "auth.api_key_pepper", "sessions.encryption_key"] {
                assert_eq!(mode(&dir.join("secrets").join(key)), 0o600, "{key}");
            }
        }
        let leftovers: Vec<_> = fs::read_dir(dir.join("secrets")).expect("list").flatten().collect();
        assert_eq!(leftovers.len(), 3, "no temporary files stay behind");

        let mut again = settings_in(&dir);
        let report = ensure_secrets(&mut again).expect("load");
        assert!(report.generated.is_empty());
        assert_eq!(report.loaded.len(), 3);
        let reread: Vec<String> = again.secrets().iter().map(|(_, s)| s.expose().to_owned()).collect();
        assert_eq!(values, reread);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn configured_secrets_win_and_create_no_file() {
        let dir = temp_dir();
        let mut settings = settings_in(&dir);
        settings.auth.jwt_secret = Secret::new("a-configured-jwt-secret-of-enough-length".into());
        let report = ensure_secrets(&mut settings).expect("generate the other two");
        assert_eq!(report.generated, vec!["auth.api_key_pepper", "sessions.encryption_key"]);
        assert_eq!(settings.auth.jwt_secret.expose(), "a-configured-jwt-secret-of-enough-length");
        assert!(!dir.join("secrets/auth.jwt_secret").exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_others_can_read_or_a_broken_one_stops_the_start() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir();
        ensure_secrets(&mut settings_in(&dir)).expect("generate");
        let pepper = dir.join("secrets/auth.api_key_pepper");
        fs::set_permissions(&pepper, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = ensure_secrets(&mut settings_in(&dir)).expect_err("exposed");
        assert!(matches!(err, SecretsError::Exposed { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&pepper, fs::Permissions::from_mode(0o600)).expect("chmod");
        let key = dir.join("secrets/sessions.encryption_key");
        fs::write(&key, "not base64 at all").expect("overwrite");
        let err = ensure_secrets(&mut settings_in(&dir)).expect_err("broken");
        assert!(matches!(err, SecretsError::Invalid { key: "sessions.encryption_key", .. }), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn racing_writers_agree_on_one_secret() {
        let dir = temp_dir();
        let secrets = dir.join("secrets");
        create_private_dir(&secrets).expect("dir");
        let path = secrets.join("auth.jwt_secret");
        let first = write_new_secret(&secrets, &path).expect("first");
        let second = write_new_secret(&secrets, &path).expect("second reads the first");
        assert_eq!(first, second);
        let _ = fs::remove_dir_all(dir);
    }
}
