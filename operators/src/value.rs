//! Values between Kafka bytes and jq: decoding record values per [`Format`], writing JSON, and
//! record keys.
//!
//! JSON is written by our own writer rather than jaq's printer, which may produce non-JSON
//! (`NaN`, byte strings, non-string keys): here NaN is `null`, infinities are the largest
//! finite doubles (as jq does), byte strings are strings, and non-string object keys are
//! written as their JSON text. Objects keep their insertion order, so the same value always
//! gives the same bytes.

use base64::Engine as _;
use jaq_json::{Num, Val};

use crate::spec::Format;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub(crate) fn b64_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    B64.decode(s).map_err(|e| format!("not base64: {e}"))
}

pub(crate) fn string(s: &str) -> Val {
    Val::from(s.to_string())
}

pub(crate) fn int(i: i64) -> Val {
    Val::Num(Num::from_integral(i))
}

pub(crate) fn object<'a>(pairs: impl IntoIterator<Item = (&'a str, Val)>) -> Val {
    Val::obj(pairs.into_iter().map(|(k, v)| (string(k), v)).collect())
}

/// The field `name` of an object value.
pub(crate) fn field<'a>(v: &'a Val, name: &str) -> Option<&'a Val> {
    match v {
        Val::Obj(o) => o.get(&string(name)),
        _ => None,
    }
}

/// An integer value as i64 (floats are truncated; out of range is None).
pub(crate) fn as_i64(v: &Val) -> Option<i64> {
    match v {
        Val::Num(Num::Int(i)) => i64::try_from(*i).ok(),
        Val::Num(n) => {
            let f = jaq_std::ValT::as_f64(&Val::Num(n.clone()))?;
            (f.is_finite() && f >= i64::MIN as f64 && f <= i64::MAX as f64).then_some(f as i64)
        }
        _ => None,
    }
}

pub(crate) fn as_f64(v: &Val) -> Option<f64> {
    jaq_std::ValT::as_f64(v)
}

/// The bytes of a string value.
pub(crate) fn str_bytes(v: &Val) -> Option<&[u8]> {
    match v {
        Val::TStr(b) | Val::BStr(b) => Some(b),
        _ => None,
    }
}

pub(crate) fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

/// The value's JSON text.
pub(crate) fn to_json(v: &Val) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_json(v, &mut out);
    out
}

pub(crate) fn write_json(v: &Val, out: &mut Vec<u8>) {
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(n) => write_num(n, out),
        Val::TStr(b) | Val::BStr(b) => write_str(b, out),
        Val::Arr(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(x, out);
            }
            out.push(b']');
        }
        Val::Obj(o) => {
            out.push(b'{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match str_bytes(k) {
                    Some(b) => write_str(b, out),
                    None => write_str(&to_json(k), out),
                }
                out.push(b':');
                write_json(x, out);
            }
            out.push(b'}');
        }
    }
}

fn write_num(n: &Num, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = match n {
        Num::Float(f) if f.is_nan() => write!(out, "null"),
        Num::Float(f) if f.is_infinite() => {
            write!(out, "{}", if *f > 0.0 { f64::MAX } else { f64::MIN })
        }
        // ryu's shortest form for finite floats; integers and decimals as they are.
        other => write!(out, "{other}"),
    };
}

fn write_str(b: &[u8], out: &mut Vec<u8>) {
    let s = String::from_utf8_lossy(b);
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Deepest nesting of arrays and objects accepted in records from outside the transform (as
/// serde_json's default). jaq's reader recurses without a limit, so a record of a million `[`
/// would overflow the stack; our own repartition and changelog records are not limited.
pub(crate) const MAX_INPUT_DEPTH: usize = 128;

/// Whether JSON text nests arrays and objects deeper than `max` (strings are skipped).
fn nests_deeper_than(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses one JSON document (our own records: no depth limit).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Val, String> {
    jaq_json::read::parse_single(bytes).map_err(|e| format!("invalid JSON: {e}"))
}

/// Where a record comes from, for [`decode`]'s depth limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A topic written by anyone: nesting limited to [`MAX_INPUT_DEPTH`].
    External,
    /// A repartition topic of this transform.
    Internal,
}

/// A record value as an expression sees it.
pub(crate) fn decode(format: Format, bytes: Option<&[u8]>, origin: Origin) -> Result<Val, String> {
    let Some(bytes) = bytes else {
        return Ok(Val::Null);
    };
    match format {
        Format::Json => {
            if origin == Origin::External && nests_deeper_than(bytes, MAX_INPUT_DEPTH) {
                return Err(format!(
                    "JSON nests deeper than {MAX_INPUT_DEPTH} arrays and objects"
                ));
            }
            parse_json(bytes)
        }
        Format::Text => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(string(s)),
            Err(e) => Err(format!("value is not UTF-8 text: {e}")),
        },
        Format::Bytes => Ok(Val::from(b64_encode(bytes))),
    }
}

/// A value as record bytes; `null` is a tombstone.
pub(crate) fn encode(format: Format, v: &Val) -> Result<Option<Vec<u8>>, String> {
    if matches!(v, Val::Null) {
        return Ok(None);
    }
    match (format, str_bytes(v)) {
        (Format::Json, _) => Ok(Some(to_json(v))),
        (Format::Text, Some(b)) => Ok(Some(b.to_vec())),
        (Format::Text, None) => Ok(Some(to_json(v))),
        (Format::Bytes, Some(b)) => b64_decode(b).map(Some),
        (Format::Bytes, None) => Err(format!(
            "format bytes needs a base64 string, got {}",
            type_name(v)
        )),
    }
}

/// A record key: its bytes and how expressions and outputs see it.
///
/// Keys from topics are bytes; expressions see them as (lossy UTF-8) strings. A `key_by` result
/// that is a string becomes its bytes; any other value becomes its JSON text, and the key
/// remembers it was JSON (`is_json`) so outputs show the value, not a string. Grouping is by
/// bytes: the string `"1"` and the number `1` are the same key, as they would be in Kafka.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub(crate) bytes: Option<Vec<u8>>,
    pub(crate) json: Val,
    pub(crate) is_json: bool,
}

impl Key {
    pub(crate) fn raw(bytes: Option<&[u8]>) -> Self {
        Self {
            bytes: bytes.map(<[u8]>::to_vec),
            json: bytes.map_or(Val::Null, |b| string(&String::from_utf8_lossy(b))),
            is_json: false,
        }
    }

    /// The key a `key_by` (or join `on`) result stands for; null has none.
    pub(crate) fn from_val(v: Val) -> Result<Self, String> {
        match &v {
            Val::Null => Err("the key is null".into()),
            Val::TStr(b) | Val::BStr(b) => Ok(Self {
                bytes: Some(b.to_vec()),
                json: v,
                is_json: false,
            }),
            _ => Ok(Self {
                bytes: Some(to_json(&v)),
                json: v,
                is_json: true,
            }),
        }
    }

    /// A key read back from bytes that carry the JSON marker (repartition topics).
    pub(crate) fn from_json_bytes(bytes: &[u8]) -> Result<Self, String> {
        let json = parse_json(bytes)?;
        Ok(Self {
            bytes: Some(bytes.to_vec()),
            json,
            is_json: true,
        })
    }

    pub(crate) fn group_bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or_default()
    }

    /// The key in changelog values.
    pub(crate) fn to_state(&self) -> Val {
        object([
            (
                "b",
                self.bytes
                    .as_deref()
                    .map_or(Val::Null, |b| Val::from(b64_encode(b))),
            ),
            ("j", self.json.clone()),
            ("t", Val::Bool(self.is_json)),
        ])
    }

    pub(crate) fn from_state(v: &Val) -> Result<Self, String> {
        let bytes = match field(v, "b") {
            None | Some(Val::Null) => None,
            Some(b) => Some(b64_decode(
                str_bytes(b).ok_or("key bytes are not a string")?,
            )?),
        };
        Ok(Self {
            bytes,
            json: field(v, "j").cloned().unwrap_or(Val::Null),
            is_json: matches!(field(v, "t"), Some(Val::Bool(true))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_special_values() {
        let v = parse_json(br#"{"a":[1,2.5,"x\n\"y"],"b":null,"c":{"d":true},"e":1e400}"#).unwrap();
        let text = String::from_utf8(to_json(&v)).unwrap();
        assert_eq!(
            text,
            r#"{"a":[1,2.5,"x\n\"y"],"b":null,"c":{"d":true},"e":1e400}"#
        );
        assert_eq!(to_json(&Val::from(f64::NAN)), b"null");
        assert_eq!(to_json(&Val::from(0.1 + 0.2)), b"0.30000000000000004");
        assert_eq!(to_json(&Val::from(2.0)), b"2.0");
        assert_eq!(to_json(&int(-7)), b"-7");
    }

    #[test]
    fn formats() {
        let ext = Origin::External;
        assert_eq!(
            decode(Format::Text, Some(b"hi"), ext).unwrap(),
            string("hi")
        );
        assert!(decode(Format::Text, Some(&[0xff]), ext).is_err());
        assert!(decode(Format::Json, Some(b"{"), ext).is_err());
        let b = decode(Format::Bytes, Some(&[0, 255]), ext).unwrap();
        assert_eq!(encode(Format::Bytes, &b).unwrap(), Some(vec![0, 255]));
        assert_eq!(decode(Format::Json, None, ext).unwrap(), Val::Null);
        assert_eq!(encode(Format::Json, &Val::Null).unwrap(), None);
        assert_eq!(
            encode(Format::Text, &string("x")).unwrap(),
            Some(b"x".to_vec())
        );
        assert_eq!(
            encode(Format::Json, &string("x")).unwrap(),
            Some(b"\"x\"".to_vec())
        );
        assert!(encode(Format::Bytes, &int(1)).is_err());
    }

    #[test]
    fn deep_input_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let e = decode(Format::Json, Some(deep.as_bytes()), Origin::External).unwrap_err();
        assert!(e.contains("nests deeper"), "{e}");
        let ok = format!("{}\"[[[{{\\\"\"{}", "[".repeat(128), "]".repeat(128));
        assert!(decode(Format::Json, Some(ok.as_bytes()), Origin::External).is_ok());
    }

    #[test]
    fn keys() {
        let k = Key::from_val(string("abc")).unwrap();
        assert_eq!(k.bytes.as_deref(), Some(&b"abc"[..]));
        assert!(!k.is_json);
        let k = Key::from_val(int(42)).unwrap();
        assert_eq!(k.bytes.as_deref(), Some(&b"42"[..]));
        assert!(k.is_json);
        assert_eq!(Key::from_state(&k.to_state()).unwrap(), k);
        assert!(Key::from_val(Val::Null).is_err());
    }
}
