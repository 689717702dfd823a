//! Test-only failpoints: `SLUICE_FAILPOINTS=name[,name…]` makes the broker abort (as a crash
//! would: no shutdown, no flush) when it reaches a named point. Compiled into debug builds
//! only, which is what the integration tests run; release builds have none.
//!
//! Points (the transaction commit protocol, in order): `txn.end.before_prepare`,
//! `txn.end.after_prepare`, `txn.end.after_first_marker`, `txn.end.after_markers`; and in a
//! transform task's commit, before its EndTxn: `transform.commit.after_outputs`,
//! `transform.commit.after_offsets`.

/// Aborts the process if failpoint `name` is armed.
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("SLUICE_FAILPOINTS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if armed.iter().any(|a| a == name) {
        eprintln!("failpoint {name} hit");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}
