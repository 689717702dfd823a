//! Parsing and formatting of the four SCRAM messages (RFC 5802 section 7) and of `saslname`
//! escaping. Parsers borrow from the input, never panic, and refuse anything longer than
//! [`SCRAM_MESSAGE_BYTES_MAX`] before looking at it.

use base64::Engine as _;

use super::error::ScramError;

/// The longest SCRAM message accepted. Real ones are about 100-200 bytes; Kafka bounds only the
/// whole SASL frame (`sasl.server.max.receive.size`, 512 KiB), which is far more than an
/// unauthenticated peer should make us scan.
pub const SCRAM_MESSAGE_BYTES_MAX: usize = 8192;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Escapes a user name for the `n=` and `a=` attributes: `,` becomes `=2C` and `=` becomes
/// `=3D` (RFC 5802 section 5.1).
pub fn escape_saslname(username: &str) -> String {
    let mut out = String::with_capacity(username.len());
    for c in username.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_saslname`]. Any other `=` sequence, a raw `,`, a NUL or an empty name is
/// invalid (RFC 5802: "the server MUST fail the authentication").
pub fn unescape_saslname(saslname: &str) -> Result<String, ScramError> {
    if saslname.is_empty() {
        return Err(ScramError::InvalidMessage("empty user name"));
    }
    let mut out = String::with_capacity(saslname.len());
    let mut rest = saslname;
    while let Some(at) = rest.find(['=', ',', '\0']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("=2C") {
            out.push(',');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("=3D") {
            out.push('=');
            rest = after;
        } else {
            return Err(ScramError::InvalidMessage(
                "user name has an invalid escape or character",
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `s` is a valid nonce: non-empty printable ASCII without `,` (RFC 5802 `printable`).
pub(crate) fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A parsed client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFirst<'a> {
    /// `n,,`, `y,,` or with `a=...`: what `c=` must echo.
    pub(crate) gs2_header: &'a str,
    /// The unescaped authorization id, if the gs2 header had one.
    pub(crate) authzid: Option<String>,
    /// The unescaped user name.
    pub(crate) username: String,
    pub(crate) client_nonce: &'a str,
    /// client-first-message-bare, exactly as sent: the start of the AuthMessage.
    pub(crate) bare: &'a str,
}

/// A parsed client-final-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFinal<'a> {
    pub(crate) channel_binding: Vec<u8>,
    pub(crate) nonce: &'a str,
    /// client-final-message-without-proof, exactly as sent: the end of the AuthMessage.
    pub(crate) without_proof: &'a str,
    pub(crate) proof: Vec<u8>,
}

/// A parsed server-first-message (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerFirst<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u32,
}

fn text(message: &[u8]) -> Result<&str, ScramError> {
    if message.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(ScramError::MessageTooLong {
            len: message.len(),
            max: SCRAM_MESSAGE_BYTES_MAX,
        });
    }
    let s = std::str::from_utf8(message).map_err(|_| ScramError::InvalidMessage("not UTF-8"))?;
    if s.contains('\0') {
        return Err(ScramError::InvalidMessage("NUL byte"));
    }
    Ok(s)
}

/// The value of `attr` if `part` is `<name>=<value>`.
fn attr(part: &str, name: char) -> Option<&str> {
    let mut chars = part.chars();
    (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
}

fn decode_b64(s: &str, what: &'static str) -> Result<Vec<u8>, ScramError> {
    B64.decode(s).map_err(|_| ScramError::InvalidMessage(what))
}

/// An extension `key=value`: key of ASCII letters, value non-empty (commas are impossible,
/// being the separator). Returns the pair.
fn extension(part: &str) -> Result<(&str, &str), ScramError> {
    let (key, value) = part
        .split_once('=')
        .ok_or(ScramError::InvalidMessage("attribute without '='"))?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) || value.is_empty() {
        return Err(ScramError::InvalidMessage("malformed extension"));
    }
    Ok((key, value))
}

/// Parses client-first-message:
/// `gs2-cbind-flag "," [a=authzid] "," [m=... ","] n=saslname "," r=nonce ["," extensions]`.
///
/// Refuses channel binding (`p=`), mandatory extensions (`m=`) and `tokenauth=true`; other
/// extensions are ignored, as Kafka ignores them.
pub(crate) fn parse_client_first(message: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    let msg = text(message)?;
    let (flag, rest) = msg
        .split_once(',')
        .ok_or(ScramError::InvalidMessage("missing gs2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
        _ => {
            return Err(ScramError::InvalidMessage(
                "invalid gs2 channel binding flag",
            ))
        }
    }
    let (authz, bare) = rest
        .split_once(',')
        .ok_or(ScramError::InvalidMessage("missing gs2 header"))?;
    let authzid = if authz.is_empty() {
        None
    } else {
        let v = attr(authz, 'a').ok_or(ScramError::InvalidMessage("invalid gs2 authzid"))?;
        Some(unescape_saslname(v)?)
    };
    let gs2_header = &msg[..flag.len() + 1 + authz.len() + 1];

    let mut parts = bare.split(',');
    let first = parts.next().unwrap_or_default();
    if attr(first, 'm').is_some() {
        return Err(ScramError::MandatoryExtension);
    }
    let name = attr(first, 'n').ok_or(ScramError::InvalidMessage("missing n= user name"))?;
    let username = unescape_saslname(name)?;
    let client_nonce = parts
        .next()
        .and_then(|p| attr(p, 'r'))
        .ok_or(ScramError::InvalidMessage("missing r= nonce"))?;
    if !is_printable(client_nonce) {
        return Err(ScramError::InvalidMessage("nonce is not printable"));
    }
    for part in parts {
        let (key, value) = extension(part)?;
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(ScramError::TokenAuthNotSupported);
        }
    }
    Ok(ClientFirst {
        gs2_header,
        authzid,
        username,
        client_nonce,
        bare,
    })
}

/// Parses client-final-message: `c=cbind "," r=nonce ["," extensions] "," p=proof`. The proof
/// must be last (RFC 5802 section 7); the extensions are checked for form and ignored.
pub(crate) fn parse_client_final(message: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    let msg = text(message)?;
    let (without_proof, proof_part) = msg
        .rsplit_once(',')
        .ok_or(ScramError::InvalidMessage("client final message too short"))?;
    let proof = attr(proof_part, 'p').ok_or(ScramError::InvalidMessage("p= proof must be last"))?;
    let proof = decode_b64(proof, "proof is not base64")?;
    let mut parts = without_proof.split(',');
    let cbind = parts
        .next()
        .and_then(|p| attr(p, 'c'))
        .ok_or(ScramError::InvalidMessage("missing c= channel binding"))?;
    let channel_binding = decode_b64(cbind, "channel binding is not base64")?;
    let nonce = parts
        .next()
        .and_then(|p| attr(p, 'r'))
        .ok_or(ScramError::InvalidMessage("missing r= nonce"))?;
    if !is_printable(nonce) {
        return Err(ScramError::InvalidMessage("nonce is not printable"));
    }
    for part in parts {
        extension(part)?;
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// Parses server-first-message: `r=nonce "," s=salt "," i=iterations ["," extensions]`. A
/// leading `m=` fails, as RFC 5802 requires of clients.
pub(crate) fn parse_server_first(message: &[u8]) -> Result<ServerFirst<'_>, ScramError> {
    let msg = text(message)?;
    let mut parts = msg.split(',');
    let first = parts.next().unwrap_or_default();
    if attr(first, 'm').is_some() {
        return Err(ScramError::MandatoryExtension);
    }
    let nonce = attr(first, 'r').ok_or(ScramError::InvalidMessage("missing r= nonce"))?;
    if !is_printable(nonce) {
        return Err(ScramError::InvalidMessage("nonce is not printable"));
    }
    let salt = parts
        .next()
        .and_then(|p| attr(p, 's'))
        .ok_or(ScramError::InvalidMessage("missing s= salt"))?;
    let salt = decode_b64(salt, "salt is not base64")?;
    if salt.is_empty() {
        return Err(ScramError::InvalidMessage("empty salt"));
    }
    let iterations = parts
        .next()
        .and_then(|p| attr(p, 'i'))
        .ok_or(ScramError::InvalidMessage("missing i= iteration count"))?;
    let iterations: u32 = if iterations.bytes().all(|b| b.is_ascii_digit()) {
        iterations.parse().unwrap_or(0)
    } else {
        0
    };
    if iterations == 0 {
        return Err(ScramError::InvalidMessage("invalid iteration count"));
    }
    for part in parts {
        extension(part)?;
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// Parses server-final-message: `v=signature ["," extensions]`, or `e=error` which becomes
/// [`ScramError::ServerError`].
pub(crate) fn parse_server_final(message: &[u8]) -> Result<Vec<u8>, ScramError> {
    let msg = text(message)?;
    let mut parts = msg.split(',');
    let first = parts.next().unwrap_or_default();
    if let Some(e) = attr(first, 'e') {
        return Err(ScramError::ServerError(e.to_owned()));
    }
    let v = attr(first, 'v').ok_or(ScramError::InvalidMessage("missing v= verifier"))?;
    let signature = decode_b64(v, "server signature is not base64")?;
    for part in parts {
        extension(part)?;
    }
    Ok(signature)
}

/// `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`.
pub(crate) fn format_server_first(combined_nonce: &str, salt: &[u8], iterations: u32) -> String {
    format!("r={combined_nonce},s={},i={iterations}", B64.encode(salt))
}

/// `v=<server signature>`.
pub(crate) fn format_server_final(signature: &[u8]) -> String {
    format!("v={}", B64.encode(signature))
}

/// `c=<base64 gs2 header>,r=<nonce>`.
pub(crate) fn format_client_final_without_proof(gs2_header: &str, nonce: &str) -> String {
    format!("c={},r={nonce}", B64.encode(gs2_header))
}

/// Appends `,p=<proof>`.
pub(crate) fn format_client_final(without_proof: &str, proof: &[u8]) -> String {
    format!("{without_proof},p={}", B64.encode(proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn saslname_escaping_round_trips() -> TestResult {
        for name in [
            "user",
            "a,b",
            "a=b",
            "=2C",
            ",=,=",
            "ünïcödé",
            "=3D=2C",
            "x=",
            "=",
            ",",
        ] {
            let escaped = escape_saslname(name);
            assert!(!escaped.contains(','), "{escaped}");
            assert_eq!(unescape_saslname(&escaped)?, name);
        }
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_saslname("a=2Cb=3Dc")?, "a,b=c");
        Ok(())
    }

    #[test]
    fn saslname_rejects_bad_escapes() -> TestResult {
        for bad in [
            "", "a=", "a=2", "a=2c", "a=3d", "a=41", "a==", "=", "a,b", "a\0b", "=2", "==3D",
        ] {
            assert!(unescape_saslname(bad).is_err(), "{bad:?} accepted");
        }
        Ok(())
    }

    #[test]
    fn client_first_plain_header() -> TestResult {
        let m = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")?;
        assert_eq!(m.gs2_header, "n,,");
        assert_eq!(m.authzid, None);
        assert_eq!(m.username, "user");
        assert_eq!(m.client_nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(m.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        Ok(())
    }

    #[test]
    fn client_first_with_authzid_and_y_flag() -> TestResult {
        let m = parse_client_first(b"y,a=b=2Cob,n=b=2Cob,r=abc")?;
        assert_eq!(m.gs2_header, "y,a=b=2Cob,");
        assert_eq!(m.authzid.as_deref(), Some("b,ob"));
        assert_eq!(m.username, "b,ob");
        assert_eq!(m.bare, "n=b=2Cob,r=abc");
        Ok(())
    }

    #[test]
    fn client_first_extensions() -> TestResult {
        // Unknown extensions are ignored.
        let m = parse_client_first(b"n,,n=u,r=abc,foo=bar,x=1")?;
        assert_eq!(m.bare, "n=u,r=abc,foo=bar,x=1");
        // tokenauth=false is harmless; tokenauth=true is refused.
        parse_client_first(b"n,,n=u,r=abc,tokenauth=false")?;
        assert_eq!(
            parse_client_first(b"n,,n=u,r=abc,tokenauth=true"),
            Err(ScramError::TokenAuthNotSupported)
        );
        assert_eq!(
            parse_client_first(b"n,,n=u,r=abc,tokenauth=TRUE"),
            Err(ScramError::TokenAuthNotSupported)
        );
        Ok(())
    }

    #[test]
    fn client_first_refusals() -> TestResult {
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=u,r=abc"),
            Err(ScramError::ChannelBindingNotSupported)
        );
        assert_eq!(
            parse_client_first(b"n,,m=ext,n=u,r=abc"),
            Err(ScramError::MandatoryExtension)
        );
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=u,r=abc",
            b"nn,,n=u,r=abc",
            b"n,b=x,n=u,r=abc",
            b"n,a=,n=u,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"n,,n=u,r=a b",
            b"n,,n=u,r=abc\x7f",
            b"n,,n=u,r=abc,",
            b"n,,n=u,r=abc,=x",
            b"n,,n=u,r=abc,k=",
            b"n,,n=u,r=abc,k",
            b"n,,n=u,r=abc,k1=v",
            b"n,,r=abc,n=u",
            b"n,,n=u=,r=abc",
            b"n,,n=u\0,r=abc",
            b"n,,n=\xff,r=abc",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b'a'; SCRAM_MESSAGE_BYTES_MAX + 1];
        assert!(matches!(
            parse_client_first(&long),
            Err(ScramError::MessageTooLong { .. })
        ));
        Ok(())
    }

    #[test]
    fn client_final_parses() -> TestResult {
        let m = parse_client_final(b"c=biws,r=abcdef,p=AAEC")?;
        assert_eq!(m.channel_binding, b"n,,");
        assert_eq!(m.nonce, "abcdef");
        assert_eq!(m.without_proof, "c=biws,r=abcdef");
        assert_eq!(m.proof, [0, 1, 2]);
        let m = parse_client_final(b"c=biws,r=abcdef,ext=1,p=AAEC")?;
        assert_eq!(m.without_proof, "c=biws,r=abcdef,ext=1");
        for bad in [
            &b""[..],
            b"p=AAEC",
            b"c=biws,p=AAEC",
            b"c=biws,r=abc",
            b"c=biws,r=abc,p=",
            b"c=biws,r=abc,p=AAE",
            b"c=biws,r=abc,p=AA!C",
            b"c=bi,r=abc,p=AAEC",
            b"r=abc,c=biws,p=AAEC",
            b"c=biws,r=abc,p=AAEC,x=1",
            b"c=biws,r=,p=AAEC",
            b"c=biws,r=abc,bad,p=AAEC",
        ] {
            // `p=` with an empty value decodes to an empty proof, which the server refuses by
            // length; everything else is a parse error.
            if bad == b"c=biws,r=abc,p=" {
                assert_eq!(parse_client_final(bad)?.proof, b"");
                continue;
            }
            assert!(
                parse_client_final(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        Ok(())
    }

    #[test]
    fn server_messages_round_trip() -> TestResult {
        let first = format_server_first("abcXYZ", b"salt", 4096);
        assert_eq!(first, "r=abcXYZ,s=c2FsdA==,i=4096");
        let p = parse_server_first(first.as_bytes())?;
        assert_eq!(
            p,
            ServerFirst {
                nonce: "abcXYZ",
                salt: b"salt".to_vec(),
                iterations: 4096
            }
        );
        let fin = format_server_final(b"sig");
        assert_eq!(parse_server_final(fin.as_bytes())?, b"sig");
        assert_eq!(
            parse_server_final(b"e=invalid-proof"),
            Err(ScramError::ServerError("invalid-proof".into()))
        );
        for bad in [
            &b"r=a,s=c2FsdA==,i=0"[..],
            b"r=a,s=c2FsdA==,i=-1",
            b"r=a,s=c2FsdA==,i=+1",
            b"r=a,s=c2FsdA==,i=99999999999",
            b"r=a,s=,i=4096",
            b"r=a,i=4096",
            b"m=x,r=a,s=c2FsdA==,i=4096",
        ] {
            assert!(parse_server_first(bad).is_err());
        }
        assert!(parse_server_final(b"x=1").is_err());
        Ok(())
    }

    #[test]
    fn client_final_format() -> TestResult {
        let w = format_client_final_without_proof("n,,", "abc");
        assert_eq!(w, "c=biws,r=abc");
        assert_eq!(format_client_final(&w, &[0, 1, 2]), "c=biws,r=abc,p=AAEC");
        Ok(())
    }

    #[test]
    fn printable_nonces() -> TestResult {
        assert!(is_printable("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
        assert!(!is_printable(""));
        assert!(!is_printable("a,b"));
        assert!(!is_printable("a b"));
        assert!(!is_printable("é"));
        Ok(())
    }
}
