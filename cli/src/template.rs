//! `consume --format` templates: `%k` key, `%v` value, `%o` offset, `%p` partition, `%t`
//! timestamp (ms), `%h` headers (`k=v,k2=v2`), `%%` a percent sign; `\t`, `\n`, `\r` and `\\`
//! escapes. Keys and values are written as their raw bytes; null ones as nothing.

use std::str::FromStr;

use sluice_clients::ConsumerRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Key,
    Value,
    Offset,
    Partition,
    Timestamp,
    Headers,
}

/// A parsed output template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl FromStr for Template {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut text = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let field = match chars.next() {
                        Some('k') => Part::Key,
                        Some('v') => Part::Value,
                        Some('o') => Part::Offset,
                        Some('p') => Part::Partition,
                        Some('t') => Part::Timestamp,
                        Some('h') => Part::Headers,
                        Some('%') => {
                            text.push(b'%');
                            continue;
                        }
                        Some(other) => {
                            return Err(format!(
                            "unknown placeholder %{other} (use %k %v %o %p %t %h, or %% for '%')"
                        ))
                        }
                        None => {
                            return Err(
                                "template ends with a lone '%' (write %% for a percent sign)"
                                    .into(),
                            )
                        }
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(field);
                }
                '\\' => {
                    let byte = match chars.next() {
                        Some('t') => b'\t',
                        Some('n') => b'\n',
                        Some('r') => b'\r',
                        Some('\\') => b'\\',
                        Some(other) => {
                            return Err(format!(
                                "unknown escape \\{other} (use \\t \\n \\r or \\\\)"
                            ))
                        }
                        None => {
                            return Err(
                                "template ends with a lone '\\' (write \\\\ for a backslash)"
                                    .into(),
                            )
                        }
                    };
                    text.push(byte);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    text.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }
}

impl Template {
    /// Appends `record` rendered by this template to `out` (no line ending).
    pub fn render(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text),
                Part::Key => out.extend_from_slice(record.key.as_deref().unwrap_or_default()),
                Part::Value => out.extend_from_slice(record.value.as_deref().unwrap_or_default()),
                Part::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
                Part::Partition => out.extend_from_slice(record.partition.to_string().as_bytes()),
                Part::Timestamp => {
                    out.extend_from_slice(record.timestamp_ms.to_string().as_bytes())
                }
                Part::Headers => {
                    for (i, (key, value)) in record.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(key.as_bytes());
                        if let Some(value) = value {
                            out.push(b'=');
                            out.extend_from_slice(value);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            partition: 2,
            offset: 42,
            timestamp_ms: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"\xffraw")),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
        }
    }

    fn render(template: &str, record: &ConsumerRecord) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        template.parse::<Template>()?.render(record, &mut out);
        Ok(out)
    }

    #[test]
    fn renders_every_placeholder() -> Result<(), String> {
        let out = render("%k\t%v|%o %p %t [%h] 100%%\\n", &record())?;
        assert_eq!(
            out,
            b"user-1\t\xffraw|42 2 1700000000000 [a=1,b] 100%\n".to_vec()
        );
        Ok(())
    }

    #[test]
    fn nulls_render_empty_and_text_passes_through() -> Result<(), String> {
        let mut r = record();
        r.key = None;
        r.value = None;
        r.headers.clear();
        assert_eq!(render("<%k><%v><%h>", &r)?, b"<><><>".to_vec());
        assert_eq!(render("näive → %o", &r)?, "näive → 42".as_bytes().to_vec());
        assert_eq!(render("", &r)?, Vec::<u8>::new());
        Ok(())
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["%", "%x", "abc%", "\\", "\\q", "%K"] {
            assert!(bad.parse::<Template>().is_err(), "{bad:?}");
        }
    }
}
