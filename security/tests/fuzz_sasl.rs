//! Fuzz smoke test of everything in `sluice-security` that parses bytes from the network: the
//! SASL PLAIN parser and whole SCRAM exchanges (server side, plus the client's parsing of
//! server messages).
//!
//! A mutation fuzzer on stable Rust, in the style of `broker/tests/fuzz_decode.rs`: seeds are
//! valid PLAIN messages and valid SCRAM client-first/client-final (and server) messages,
//! mutated by bit flips, byte changes, truncation, insertion, splicing and inserted `,`, `=`
//! and escape sequences. Runs for `SLUICE_FUZZ_SECS` seconds (default 5) from
//! `SLUICE_FUZZ_SEED` (default: the clock). Any panic fails the test and prints the seed and
//! the input; so does a mutated exchange that authenticates (a forged proof accepted).

use std::panic::{catch_unwind, AssertUnwindSafe};

use base64::Engine as _;
use std::time::{Duration, Instant};

use sluice_security::credentials::CredentialStore;
use sluice_security::plain::parse_plain;
use sluice_security::scram::client::{ScramClient, ScramClientFinal};
use sluice_security::scram::{
    MockCredentials, ScramCredential, ScramMechanism, ScramServer, ScramServerStep, ServerNonce,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SERVER_NONCE: &str = "fuzz-server-nonce";
const CLIENT_NONCE: &str = "fuzz-client-nonce";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What a seed is, so the exercise knows where to feed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Plain,
    ClientFirst,
    ClientFinal,
    ServerFirst,
    ServerFinal,
}

/// A valid exchange for one mechanism: its four messages.
struct Exchange {
    mechanism: ScramMechanism,
    client_first: Vec<u8>,
    server_first: Vec<u8>,
    client_final: Vec<u8>,
    server_final: Vec<u8>,
    /// The client after server-first, to check mutated server-final messages without
    /// re-running PBKDF2.
    awaiting_server_final: ScramClientFinal,
}

struct Fixture {
    users: CredentialStore,
    mock: MockCredentials,
    exchanges: Vec<Exchange>,
    corpus: Vec<(Kind, Vec<u8>)>,
}

fn server(f: &Fixture, m: ScramMechanism) -> Result<ScramServer, Box<dyn std::error::Error>> {
    Ok(ScramServer::new(
        m,
        ServerNonce::new(SERVER_NONCE)?,
        f.mock.clone(),
    ))
}

fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let mut users = CredentialStore::in_memory();
    for m in ScramMechanism::ALL {
        users.upsert(
            "alice",
            m,
            ScramCredential::derive(m, "s3cret", b"fuzz-salt", 4096),
        )?;
        users.upsert(
            "a,b=c",
            m,
            ScramCredential::derive(m, "pw", b"fuzz-salt-2", 4096),
        )?;
    }
    let mut f = Fixture {
        users,
        mock: MockCredentials::new([0x42; 32]),
        exchanges: Vec::new(),
        corpus: Vec::new(),
    };
    for m in ScramMechanism::ALL {
        let client = ScramClient::new(m, "alice", "s3cret", CLIENT_NONCE)?;
        let client_first = client.client_first_message().into_bytes();
        let mut s = server(&f, m)?;
        let ScramServerStep::Challenge(server_first) = s.step(&client_first, &f.users)? else {
            return Err("no challenge".into());
        };
        let client = client.handle_server_first(&server_first)?;
        let client_final = client.client_final_message().as_bytes().to_vec();
        let ScramServerStep::Success(done) = s.step(&client_final, &f.users)? else {
            return Err("no success".into());
        };
        client.clone().verify_server_final(&done.server_final)?;
        f.exchanges.push(Exchange {
            mechanism: m,
            client_first,
            server_first,
            client_final,
            server_final: done.server_final,
            awaiting_server_final: client,
        });
    }
    for plain in [
        &b"\0alice\0s3cret"[..],
        b"alice\0alice\0s3cret",
        b"\0a,b=c\0pw",
        "\0ünï\0pässwörd".as_bytes(),
    ] {
        f.corpus.push((Kind::Plain, plain.to_vec()));
    }
    for e in &f.exchanges {
        f.corpus.push((Kind::ClientFirst, e.client_first.clone()));
        f.corpus.push((Kind::ClientFinal, e.client_final.clone()));
        f.corpus.push((Kind::ServerFirst, e.server_first.clone()));
        f.corpus.push((Kind::ServerFinal, e.server_final.clone()));
    }
    for first in [
        &b"n,a=alice,n=alice,r=fuzz-client-nonce"[..],
        b"y,,n=a=2Cb=3Dc,r=fuzz-client-nonce,ext=1",
        b"n,,n=alice,r=fuzz-client-nonce,tokenauth=false",
        b"n,,n=nobody,r=fuzz-client-nonce",
    ] {
        f.corpus.push((Kind::ClientFirst, first.to_vec()));
    }
    Ok(f)
}

const INTERESTING: [&[u8]; 12] = [
    b",",
    b"=",
    b"=2C",
    b"=3D",
    b"=2c",
    b",p=",
    b",r=",
    b"c=biws,",
    b"n,,",
    b"\0",
    b"\xff",
    b"tokenauth=true",
];

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        if input.is_empty() {
            input.push(rng.next() as u8);
        }
        let at = rng.below(input.len());
        match rng.below(8) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input[at] = rng.next() as u8,
            2 => input.truncate(at),
            3 => {
                for _ in 0..1 + rng.below(8) {
                    input.insert(at, rng.next() as u8);
                }
            }
            4 => {
                let s = INTERESTING[rng.below(INTERESTING.len())];
                input.splice(at..at, s.iter().copied());
            }
            5 => {
                // Delete a run.
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at..end);
            }
            6 => {
                // Forge the proof: random bytes, usually of a digest's length, so a weak proof
                // check shows up as an accepted exchange.
                if let Some(at) = find(input, b",p=") {
                    let len = [32, 64, rng.below(80)][rng.below(3)];
                    let proof: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    input.truncate(at + 3);
                    input.extend_from_slice(B64.encode(proof).as_bytes());
                }
            }
            _ => {
                let end = (at + rng.below(32)).min(input.len());
                let chunk = input[at..end].to_vec();
                let to = rng.below(input.len());
                input.splice(to..to, chunk);
            }
        }
    }
}

/// Feeds `input` everywhere it could arrive. Returns an error (not a panic) when a mutated
/// exchange authenticates, which would be a forged proof accepted.
fn exercise(f: &Fixture, kind: Kind, input: &[u8]) -> Result<(), String> {
    let _ = parse_plain(input);
    for e in &f.exchanges {
        let m = e.mechanism;
        let new_server = || server(f, m).map_err(|err| err.to_string());
        // As a client-first, then the valid final.
        let mut s = new_server()?;
        if s.step(input, &f.users).is_ok() {
            let ok = matches!(
                s.step(&e.client_final, &f.users),
                Ok(ScramServerStep::Success(_))
            );
            if ok && input != e.client_first.as_slice() {
                return Err(format!("{m}: mutated client-first authenticated"));
            }
            let _ = s.step(input, &f.users);
        }
        // As a client-final after the valid first.
        let mut s = new_server()?;
        if s.step(&e.client_first, &f.users).is_ok() {
            let ok = matches!(s.step(input, &f.users), Ok(ScramServerStep::Success(_)));
            if ok && input != e.client_final.as_slice() {
                return Err(format!("{m}: mutated client-final authenticated"));
            }
            let _ = s.step(input, &f.users);
        }
        // The client parsing server messages. A well-formed server-first costs a PBKDF2 run,
        // so only the cheaper mechanism takes those.
        if kind == Kind::ServerFirst && m == ScramMechanism::Sha256 {
            let client = ScramClient::new(m, "alice", "s3cret", CLIENT_NONCE)
                .map_err(|err| err.to_string())?;
            if let Ok(fin) = client.handle_server_first(input) {
                let _ = fin.verify_server_final(&e.server_final);
            }
        }
        if kind == Kind::ServerFinal {
            let verified = e
                .awaiting_server_final
                .clone()
                .verify_server_final(input)
                .is_ok();
            if verified && input != e.server_final.as_slice() {
                return Err(format!("{m}: mutated server-final verified"));
            }
        }
    }
    Ok(())
}

#[test]
fn sasl_parsers_and_exchanges_never_panic_on_mutated_input() -> TestResult {
    let secs: u64 = std::env::var("SLUICE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("SLUICE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let f = fixture()?;
    // Every seed is valid as is (the fuzzer starts from accepted inputs).
    for (kind, s) in &f.corpus {
        match kind {
            Kind::Plain => {
                parse_plain(s)?;
            }
            Kind::ClientFirst => {
                let m = ScramMechanism::Sha256;
                server(&f, m)?.step(s, &f.users)?;
            }
            _ => {}
        }
    }
    exercise(&f, Kind::ClientFinal, &f.exchanges[0].client_final)?;

    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs = 0u64;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while Instant::now() < deadline && failure.is_none() {
        for _ in 0..64 {
            let (kind, seed_input) = &f.corpus[rng.below(f.corpus.len())];
            let mut input = seed_input.clone();
            mutate(&mut rng, &mut input);
            match catch_unwind(AssertUnwindSafe(|| exercise(&f, *kind, &input))) {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    failure = Some((why, input));
                    break;
                }
                Err(_) => {
                    failure = Some(("panic".to_owned(), input));
                    break;
                }
            }
            runs += 1;
        }
    }
    std::panic::set_hook(hook);
    if let Some((why, input)) = failure {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "{why} (SLUICE_FUZZ_SEED={seed}) on input {hex} ({:?})",
            String::from_utf8_lossy(&input)
        )
        .into());
    }
    eprintln!("sasl fuzz smoke: {runs} inputs in {secs} s, seed {seed}, no panic");
    Ok(())
}
