//! Parsers for CLI values that clap does not know: `key=value` pairs and start positions.

use std::str::FromStr;

/// Parses `key=value`; the key must be non-empty, the value may be empty or contain `=`.
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        Some(_) => Err(format!("{s:?} has an empty key; expected KEY=VALUE")),
        None => Err(format!("{s:?} has no '='; expected KEY=VALUE")),
    }
}

/// Where consumption starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The log start offset.
    Beginning,
    /// The log end offset: only records produced from now on.
    End,
    /// This offset in every partition.
    Offset(i64),
    /// The first record at or after this timestamp (ms since the epoch).
    Timestamp(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected beginning, end, an offset, or @TIMESTAMP_MS";
        match s {
            "beginning" | "earliest" => Ok(StartFrom::Beginning),
            "end" | "latest" => Ok(StartFrom::End),
            _ => {
                if let Some(ms) = s.strip_prefix('@') {
                    match ms.parse::<i64>() {
                        Ok(ms) if ms >= 0 => Ok(StartFrom::Timestamp(ms)),
                        _ => Err(format!(
                            "{s:?} is not a timestamp in ms since the epoch; {expected}"
                        )),
                    }
                } else {
                    match s.parse::<i64>() {
                        Ok(offset) if offset >= 0 => Ok(StartFrom::Offset(offset)),
                        _ => Err(format!("{s:?} is not a start position; {expected}")),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(key_value("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }

    #[test]
    fn start_positions() {
        assert_eq!("beginning".parse(), Ok(StartFrom::Beginning));
        assert_eq!("end".parse(), Ok(StartFrom::End));
        assert_eq!("42".parse(), Ok(StartFrom::Offset(42)));
        assert_eq!(
            "@1700000000000".parse(),
            Ok(StartFrom::Timestamp(1_700_000_000_000))
        );
        for bad in ["", "-1", "@", "@-1", "@x", "tomorrow", "1.5"] {
            assert!(bad.parse::<StartFrom>().is_err(), "{bad:?}");
        }
    }
}
