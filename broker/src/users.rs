//! `sluice user create|delete|list --data-dir DIR`: SCRAM users edited in a stopped broker's
//! data dir, so that the first super user exists before the broker starts with SASL and the
//! authorizer on. (A running broker holds the data dir's lock; with it running, use the Kafka
//! API: `sluice user ... --bootstrap`, AlterUserScramCredentials.)

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};
use sluice_security::credentials::CredentialStore;
use sluice_security::scram::{ScramCredential, ScramMechanism};

/// Kafka's default SCRAM iteration count.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The mechanisms `--mechanism` names: one, or `all` (both SCRAM mechanisms).
pub fn mechanisms(name: &str) -> anyhow::Result<Vec<ScramMechanism>> {
    if name.eq_ignore_ascii_case("all") {
        return Ok(vec![ScramMechanism::Sha256, ScramMechanism::Sha512]);
    }
    ScramMechanism::from_name(&name.to_ascii_uppercase())
        .map(|m| vec![m])
        .with_context(|| format!("{name}: the mechanism is SCRAM-SHA-256, SCRAM-SHA-512 or all"))
}

/// Fails if a broker is running on the data dir (it would overwrite the store).
fn lock(data_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join(".lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "a broker is running on {}: change users through it (--bootstrap) or stop it first",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("cannot lock the data dir"),
    }
}

fn open(data_dir: &Path) -> anyhow::Result<CredentialStore> {
    CredentialStore::open(crate::security::credentials_path(data_dir))
        .context("cannot open the credential store")
}

pub fn create(
    data_dir: &Path,
    user: &str,
    password: &str,
    mechanism: &str,
    iterations: u32,
) -> anyhow::Result<()> {
    if user.is_empty() || password.is_empty() {
        bail!("the user name and the password must not be empty");
    }
    let _lock = lock(data_dir)?;
    let mut store = open(data_dir)?;
    for m in mechanisms(mechanism)? {
        if !(m.min_iterations()..=m.max_iterations()).contains(&iterations) {
            bail!(
                "--iterations must be {} to {} for {}",
                m.min_iterations(),
                m.max_iterations(),
                m.name()
            );
        }
        let c = ScramCredential::generate(m, password, iterations, &mut rand::thread_rng());
        store
            .upsert(user, m, c)
            .with_context(|| format!("cannot store {user}'s {} credential", m.name()))?;
        println!(
            "{user}: {} credential set ({iterations} iterations)",
            m.name()
        );
    }
    Ok(())
}

pub fn delete(data_dir: &Path, user: &str, mechanism: &str) -> anyhow::Result<()> {
    let _lock = lock(data_dir)?;
    let mut store = open(data_dir)?;
    let mut deleted = 0;
    for m in mechanisms(mechanism)? {
        if store.get(user, m).is_some() {
            store
                .delete(user, m)
                .with_context(|| format!("cannot delete {user}'s {} credential", m.name()))?;
            println!("{user}: {} credential deleted", m.name());
            deleted += 1;
        }
    }
    if deleted == 0 {
        bail!("user {user} has no such credential");
    }
    Ok(())
}

pub fn list(data_dir: &Path) -> anyhow::Result<()> {
    let store = open(data_dir)?;
    println!("USER  MECHANISM  ITERATIONS");
    for (user, infos) in store.describe_all() {
        for i in infos {
            println!("{user}  {}  {}", i.mechanism.name(), i.iterations);
        }
    }
    Ok(())
}
