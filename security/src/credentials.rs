//! The durable SCRAM user database: user -> mechanism -> [`ScramCredential`], one JSON file
//! (the broker uses `<data-dir>/__security/scram-credentials.json`). It serves SCRAM logins,
//! PLAIN logins ([`CredentialStore::verify_plain`]) and the Describe/AlterUserScramCredentials
//! APIs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::persist::{load_json, save_json, StoreError};
use crate::scram::{CredentialError, ScramCredential, ScramCredentialLookup, ScramMechanism};

/// Version of the file format written by this crate.
const FORMAT_VERSION: u32 = 1;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a credential operation was refused. Maps to AlterUserScramCredentials' error codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialStoreError {
    /// The user name is empty (`UNACCEPTABLE_CREDENTIAL`).
    #[error("Username must not be empty")]
    EmptyUsername,
    /// The credential breaks the mechanism's rules (`UNACCEPTABLE_CREDENTIAL`).
    #[error("{0}")]
    Unacceptable(#[from] CredentialError),
    /// Deleting a credential that does not exist (`RESOURCE_NOT_FOUND`).
    #[error("Attempt to delete a user credential that does not exist")]
    NotFound,
    /// The file could not be written; nothing changed (`KAFKA_STORAGE_ERROR` or
    /// `UNKNOWN_SERVER_ERROR`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What DescribeUserScramCredentials shows of a credential: never the salt or keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    pub mechanism: ScramMechanism,
    pub iterations: u32,
}

/// One AlterUserScramCredentials operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramAlteration {
    /// Set (add or replace) the user's credential for the mechanism.
    Upsert {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    /// Remove the user's credential for the mechanism.
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

type Users = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;

/// The SCRAM user database. Every change is written to disk before it returns (when the store
/// has a path), and a failed write leaves memory unchanged too.
///
/// Not synchronized: the broker wraps it in a lock (reads are the hot path: one lookup per
/// login).
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    path: Option<PathBuf>,
    users: Users,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    /// user -> mechanism name -> credential.
    users: BTreeMap<String, BTreeMap<String, FileCredential>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredential {
    salt: String,
    stored_key: String,
    server_key: String,
    iterations: u32,
}

impl CredentialStore {
    /// An empty store that is never persisted (tests, or a broker without a data directory).
    pub fn in_memory() -> CredentialStore {
        CredentialStore::default()
    }

    /// Loads the store at `path`; a missing file is an empty store. A file that does not parse,
    /// has an unknown version or mechanism, or holds an invalid credential is `Corrupted`.
    pub fn open(path: impl Into<PathBuf>) -> Result<CredentialStore, StoreError> {
        let path = path.into();
        let users = match load_json::<FileFormat>(&path)? {
            None => Users::new(),
            Some(file) => from_file(&path, file)?,
        };
        Ok(CredentialStore {
            path: Some(path),
            users,
        })
    }

    /// The file backing the store, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The credential of `user` for `mechanism`.
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.users.get(user)?.get(&mechanism)
    }

    /// DescribeUserScramCredentials for one user: their mechanisms and iteration counts, or
    /// `None` if they have no credential (`RESOURCE_NOT_FOUND`).
    pub fn describe(&self, user: &str) -> Option<Vec<ScramCredentialInfo>> {
        self.users.get(user).map(describe_one)
    }

    /// DescribeUserScramCredentials for all users (a request without a user list), by name.
    pub fn describe_all(&self) -> Vec<(String, Vec<ScramCredentialInfo>)> {
        self.users
            .iter()
            .map(|(u, creds)| (u.clone(), describe_one(creds)))
            .collect()
    }

    /// Sets `user`'s credential for `mechanism` after validating it (iterations in Kafka's
    /// range, salt and key lengths), and persists.
    pub fn upsert(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    ) -> Result<(), CredentialStoreError> {
        self.single(ScramAlteration::Upsert {
            user: user.to_owned(),
            mechanism,
            credential,
        })
    }

    /// Removes `user`'s credential for `mechanism` and persists; `NotFound` if there was none.
    pub fn delete(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<(), CredentialStoreError> {
        self.single(ScramAlteration::Delete {
            user: user.to_owned(),
            mechanism,
        })
    }

    /// Applies an AlterUserScramCredentials request: each operation is validated and applied
    /// in order, with one result per operation, then the store is written once. If the write
    /// fails nothing changes, in memory or on disk, and the error is returned instead.
    pub fn alter(
        &mut self,
        alterations: &[ScramAlteration],
    ) -> Result<Vec<Result<(), CredentialStoreError>>, StoreError> {
        let before = self.users.clone();
        let results: Vec<_> = alterations.iter().map(|a| self.apply(a)).collect();
        if results.iter().any(Result::is_ok) {
            if let Err(e) = self.save() {
                self.users = before;
                return Err(e);
            }
        }
        Ok(results)
    }

    /// Checks a PLAIN login against the user's SCRAM credential (SHA-512 preferred, then
    /// SHA-256) by re-deriving StoredKey from `password` with the stored salt and iterations
    /// and comparing in constant time. One user database thus serves PLAIN and SCRAM.
    ///
    /// Costs one PBKDF2 run (up to 16384 iterations) even for an unknown user, so timing does
    /// not reveal who exists: call it off the async reactor.
    pub fn verify_plain(&self, user: &str, password: &str) -> bool {
        for mechanism in ScramMechanism::ALL {
            if let Some(credential) = self.get(user, mechanism) {
                return credential.verify_password(mechanism, password);
            }
        }
        let mechanism = ScramMechanism::Sha512;
        let dummy = ScramCredential {
            salt: b"sluice-unknown-user".to_vec(),
            stored_key: vec![0; mechanism.digest_len()],
            server_key: Vec::new(),
            iterations: mechanism.min_iterations(),
        };
        let _ = std::hint::black_box(dummy.verify_password(mechanism, password));
        false
    }

    fn single(&mut self, alteration: ScramAlteration) -> Result<(), CredentialStoreError> {
        self.alter(std::slice::from_ref(&alteration))?
            .pop()
            .unwrap_or(Ok(()))
    }

    fn apply(&mut self, alteration: &ScramAlteration) -> Result<(), CredentialStoreError> {
        match alteration {
            ScramAlteration::Upsert {
                user,
                mechanism,
                credential,
            } => {
                if user.is_empty() {
                    return Err(CredentialStoreError::EmptyUsername);
                }
                credential.validate(*mechanism)?;
                self.users
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
                Ok(())
            }
            ScramAlteration::Delete { user, mechanism } => {
                if user.is_empty() {
                    return Err(CredentialStoreError::EmptyUsername);
                }
                let creds = self
                    .users
                    .get_mut(user)
                    .ok_or(CredentialStoreError::NotFound)?;
                creds
                    .remove(mechanism)
                    .ok_or(CredentialStoreError::NotFound)?;
                if creds.is_empty() {
                    self.users.remove(user);
                }
                Ok(())
            }
        }
    }

    fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = FileFormat {
            version: FORMAT_VERSION,
            users: self
                .users
                .iter()
                .map(|(u, creds)| {
                    let creds = creds
                        .iter()
                        .map(|(m, c)| {
                            (
                                m.name().to_owned(),
                                FileCredential {
                                    salt: B64.encode(&c.salt),
                                    stored_key: B64.encode(&c.stored_key),
                                    server_key: B64.encode(&c.server_key),
                                    iterations: c.iterations,
                                },
                            )
                        })
                        .collect();
                    (u.clone(), creds)
                })
                .collect(),
        };
        save_json(path, &file)
    }
}

impl ScramCredentialLookup for CredentialStore {
    fn scram_credential(
        &self,
        username: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self.get(username, mechanism).cloned()
    }
}

fn describe_one(creds: &BTreeMap<ScramMechanism, ScramCredential>) -> Vec<ScramCredentialInfo> {
    creds
        .iter()
        .map(|(m, c)| ScramCredentialInfo {
            mechanism: *m,
            iterations: c.iterations,
        })
        .collect()
}

fn from_file(path: &Path, file: FileFormat) -> Result<Users, StoreError> {
    if file.version != FORMAT_VERSION {
        return Err(StoreError::corrupted(
            path,
            format!("unsupported format version {}", file.version),
        ));
    }
    let mut users = Users::new();
    for (user, creds) in file.users {
        if user.is_empty() {
            return Err(StoreError::corrupted(path, "empty user name"));
        }
        let mut out = BTreeMap::new();
        for (name, fc) in creds {
            let mechanism = ScramMechanism::from_name(&name).ok_or_else(|| {
                StoreError::corrupted(path, format!("unknown mechanism {name:?} for {user:?}"))
            })?;
            let decode = |what: &str, s: &str| {
                B64.decode(s).map_err(|e| {
                    StoreError::corrupted(path, format!("{what} of {user:?}/{name}: {e}"))
                })
            };
            let credential = ScramCredential {
                salt: decode("salt", &fc.salt)?,
                stored_key: decode("stored_key", &fc.stored_key)?,
                server_key: decode("server_key", &fc.server_key)?,
                iterations: fc.iterations,
            };
            credential.validate(mechanism).map_err(|e| {
                StoreError::corrupted(path, format!("credential of {user:?}/{name}: {e}"))
            })?;
            out.insert(mechanism, credential);
        }
        if !out.is_empty() {
            users.insert(user, out);
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn cred(m: ScramMechanism, password: &str, iterations: u32) -> ScramCredential {
        ScramCredential::derive(m, password, b"pepper", iterations)
    }

    #[test]
    fn upsert_get_describe_delete() -> TestResult {
        let mut s = CredentialStore::in_memory();
        assert_eq!(s.path(), None);
        s.upsert(
            "alice",
            ScramMechanism::Sha256,
            cred(ScramMechanism::Sha256, "a", 4096),
        )?;
        s.upsert(
            "alice",
            ScramMechanism::Sha512,
            cred(ScramMechanism::Sha512, "a", 8192),
        )?;
        s.upsert(
            "bob",
            ScramMechanism::Sha256,
            cred(ScramMechanism::Sha256, "b", 4096),
        )?;
        assert!(s.get("alice", ScramMechanism::Sha512).is_some());
        assert!(s.get("carol", ScramMechanism::Sha512).is_none());
        assert_eq!(
            s.describe("alice"),
            Some(vec![
                ScramCredentialInfo {
                    mechanism: ScramMechanism::Sha256,
                    iterations: 4096
                },
                ScramCredentialInfo {
                    mechanism: ScramMechanism::Sha512,
                    iterations: 8192
                },
            ])
        );
        assert_eq!(s.describe("carol"), None);
        let all = s.describe_all();
        assert_eq!(
            all.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        // Upsert replaces.
        s.upsert(
            "bob",
            ScramMechanism::Sha256,
            cred(ScramMechanism::Sha256, "b2", 5000),
        )?;
        assert_eq!(
            s.describe("bob")
                .and_then(|d| d.first().map(|i| i.iterations)),
            Some(5000)
        );
        s.delete("bob", ScramMechanism::Sha256)?;
        assert_eq!(
            s.describe("bob"),
            None,
            "a user without credentials is gone"
        );
        assert!(matches!(
            s.delete("bob", ScramMechanism::Sha256),
            Err(CredentialStoreError::NotFound)
        ));
        assert!(matches!(
            s.delete("alice", ScramMechanism::Sha256)
                .and(s.delete("alice", ScramMechanism::Sha256)),
            Err(CredentialStoreError::NotFound)
        ));
        Ok(())
    }

    #[test]
    fn upsert_validates() -> TestResult {
        let mut s = CredentialStore::in_memory();
        let m = ScramMechanism::Sha256;
        assert!(matches!(
            s.upsert("", m, cred(m, "p", 4096)),
            Err(CredentialStoreError::EmptyUsername)
        ));
        assert!(matches!(
            s.upsert("u", m, cred(m, "p", 4095)),
            Err(CredentialStoreError::Unacceptable(
                CredentialError::TooFewIterations { .. }
            ))
        ));
        assert!(matches!(
            s.upsert("u", m, cred(m, "p", 16385)),
            Err(CredentialStoreError::Unacceptable(
                CredentialError::TooManyIterations { .. }
            ))
        ));
        // A SHA-512 credential filed under SHA-256.
        assert!(matches!(
            s.upsert("u", m, cred(ScramMechanism::Sha512, "p", 4096)),
            Err(CredentialStoreError::Unacceptable(
                CredentialError::KeyLength { .. }
            ))
        ));
        assert!(s.describe_all().is_empty());
        Ok(())
    }

    #[test]
    fn alter_gives_one_result_per_operation() -> TestResult {
        let mut s = CredentialStore::in_memory();
        let m = ScramMechanism::Sha512;
        let results = s.alter(&[
            ScramAlteration::Upsert {
                user: "a".into(),
                mechanism: m,
                credential: cred(m, "p", 4096),
            },
            ScramAlteration::Delete {
                user: "b".into(),
                mechanism: m,
            },
            ScramAlteration::Upsert {
                user: "c".into(),
                mechanism: m,
                credential: cred(m, "p", 1),
            },
        ])?;
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(CredentialStoreError::NotFound)));
        assert!(matches!(
            results[2],
            Err(CredentialStoreError::Unacceptable(_))
        ));
        assert!(s.get("a", m).is_some());
        Ok(())
    }

    #[test]
    fn persistence_round_trip() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("__security/scram-credentials.json");
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let a256 = ScramCredential::generate(ScramMechanism::Sha256, "pa", 4096, &mut rng);
        let a512 = ScramCredential::generate(ScramMechanism::Sha512, "pa", 4096, &mut rng);
        {
            let mut s = CredentialStore::open(&path)?;
            assert!(
                s.describe_all().is_empty(),
                "missing file is an empty store"
            );
            s.upsert("alice", ScramMechanism::Sha256, a256.clone())?;
            s.upsert("alice", ScramMechanism::Sha512, a512.clone())?;
            s.upsert("a,b=c ü", ScramMechanism::Sha256, a256.clone())?;
            s.delete("a,b=c ü", ScramMechanism::Sha256)?;
        }
        let s = CredentialStore::open(&path)?;
        assert_eq!(s.path(), Some(path.as_path()));
        assert_eq!(s.get("alice", ScramMechanism::Sha256), Some(&a256));
        assert_eq!(s.get("alice", ScramMechanism::Sha512), Some(&a512));
        assert_eq!(s.describe_all().len(), 1);
        // The file holds no password and is plain JSON.
        let text = std::fs::read_to_string(&path)?;
        assert!(text.contains("\"SCRAM-SHA-512\""));
        assert!(!text.contains("pa\""));
        Ok(())
    }

    #[test]
    fn corrupt_files_are_reported() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("creds.json");
        let good = ScramCredential::derive(ScramMechanism::Sha256, "p", b"s", 4096);
        let key = B64.encode(&good.stored_key);
        for bad in [
            "".to_owned(),
            "{".to_owned(),
            "[]".to_owned(),
            r#"{"version":2,"users":{}}"#.to_owned(),
            r#"{"version":1,"users":{"u":{"SCRAM-SHA-1":{"salt":"cw==","stored_key":"","server_key":"","iterations":4096}}}}"#.to_owned(),
            format!(r#"{{"version":1,"users":{{"u":{{"SCRAM-SHA-256":{{"salt":"cw==","stored_key":"{key}","server_key":"{key}","iterations":10}}}}}}}}"#),
            format!(r#"{{"version":1,"users":{{"u":{{"SCRAM-SHA-256":{{"salt":"!!","stored_key":"{key}","server_key":"{key}","iterations":4096}}}}}}}}"#),
            format!(r#"{{"version":1,"users":{{"":{{"SCRAM-SHA-256":{{"salt":"cw==","stored_key":"{key}","server_key":"{key}","iterations":4096}}}}}}}}"#),
        ] {
            std::fs::write(&path, &bad)?;
            let r = CredentialStore::open(&path);
            assert!(
                matches!(r, Err(StoreError::Corrupted { .. })),
                "{bad}: {r:?}"
            );
        }
        // And a valid hand-written file loads.
        std::fs::write(
            &path,
            format!(
                r#"{{"version":1,"users":{{"u":{{"SCRAM-SHA-256":{{"salt":"cw==","stored_key":"{key}","server_key":"{key}","iterations":4096}}}}}}}}"#
            ),
        )?;
        assert!(CredentialStore::open(&path)?
            .get("u", ScramMechanism::Sha256)
            .is_some());
        Ok(())
    }

    #[test]
    fn a_failed_write_changes_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = CredentialStore::open(dir.path().join("sub/creds.json"))?;
        // The store's directory is now a file, so every write fails.
        std::fs::write(dir.path().join("sub"), b"")?;
        let m = ScramMechanism::Sha256;
        let r = s.upsert("alice", m, cred(m, "p", 4096));
        assert!(matches!(r, Err(CredentialStoreError::Store(_))), "{r:?}");
        assert!(s.get("alice", m).is_none());
        Ok(())
    }

    #[test]
    fn verify_plain_uses_the_scram_credentials() -> TestResult {
        let mut s = CredentialStore::in_memory();
        s.upsert(
            "only256",
            ScramMechanism::Sha256,
            cred(ScramMechanism::Sha256, "pw256", 4096),
        )?;
        s.upsert(
            "both",
            ScramMechanism::Sha512,
            cred(ScramMechanism::Sha512, "pw512", 4096),
        )?;
        // SHA-512 is preferred when both exist (here they even disagree).
        s.upsert(
            "both",
            ScramMechanism::Sha256,
            cred(ScramMechanism::Sha256, "old", 4096),
        )?;
        assert!(s.verify_plain("only256", "pw256"));
        assert!(!s.verify_plain("only256", "pw25"));
        assert!(s.verify_plain("both", "pw512"));
        assert!(!s.verify_plain("both", "old"));
        assert!(!s.verify_plain("nobody", "pw256"));
        assert!(!s.verify_plain("", ""));
        Ok(())
    }

    #[test]
    fn serves_as_the_scram_lookup() -> TestResult {
        let mut s = CredentialStore::in_memory();
        let m = ScramMechanism::Sha256;
        s.upsert("alice", m, cred(m, "p", 4096))?;
        assert!(s.scram_credential("alice", m).is_some());
        assert!(s
            .scram_credential("alice", ScramMechanism::Sha512)
            .is_none());
        Ok(())
    }
}
