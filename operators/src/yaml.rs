//! A small YAML document tree with the position of every node, built from `saphyr-parser`'s
//! event stream.
//!
//! Specs are short, so a tree of owned strings costs nothing, and building it ourselves lets us
//! refuse what a serde mapping would silently accept: duplicate keys (the last one would win),
//! aliases, several documents. Scalars stay text: the spec decoder decides per field whether
//! `10` is a duration, a string or a number, so a topic called `10` needs no quotes.

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use crate::spec::{Pos, SpecError};

/// A YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A scalar's text; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys are scalars (checked while building), in document order, without duplicates.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The node's type for error messages.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// True for `~`, `null` or an empty plain scalar (`key:` with nothing after it).
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    /// The scalar's text (not null).
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }
}

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

/// Parses one YAML document.
pub(crate) fn parse(source: &str) -> Result<Node, SpecError> {
    let mut parser = Parser::new_from_str(source);
    // Open collections: a sequence or a mapping with the key waiting for its value.
    enum Open {
        Seq(Pos, Vec<Node>),
        Map(Pos, Vec<(Node, Node)>, Option<Node>),
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                return Err(SpecError::at(
                    Some(pos_of(e.marker())),
                    format!("YAML syntax error: {}", e.info()),
                ));
            }
        };
        let pos = pos_of(&span.start);
        let complete = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SpecError::at(
                        Some(pos),
                        "a spec is one YAML document; found a second one".to_string(),
                    ));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(SpecError::at(
                    Some(pos),
                    "YAML aliases (`*name`) are not supported in specs".to_string(),
                ));
            }
            Event::Scalar(text, style, _anchor, _tag) => Node {
                pos,
                kind: Kind::Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                },
            },
            Event::SequenceStart(..) => {
                stack.push(Open::Seq(pos, Vec::new()));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Open::Map(pos, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq(pos, items)) => Node {
                    pos,
                    kind: Kind::Seq(items),
                },
                _ => return Err(SpecError::at(Some(pos), "unbalanced YAML sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map(pos, entries, None)) => Node {
                    pos,
                    kind: Kind::Map(entries),
                },
                _ => return Err(SpecError::at(Some(pos), "unbalanced YAML mapping".into())),
            },
        };
        match stack.last_mut() {
            None => root = Some(complete),
            Some(Open::Seq(_, items)) => items.push(complete),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, complete)),
                None => {
                    let Some(name) = complete.as_str() else {
                        return Err(SpecError::at(
                            Some(complete.pos),
                            format!(
                                "mapping keys must be field names, found {}",
                                complete.describe()
                            ),
                        ));
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.as_str() == Some(name))
                    {
                        return Err(SpecError::at(
                            Some(complete.pos),
                            format!(
                                "duplicate field `{name}` (first given on line {})",
                                first.pos.line
                            ),
                        ));
                    }
                    *pending = Some(complete);
                }
            },
        }
    }
    root.ok_or_else(|| SpecError::at(Some(Pos { line: 1, column: 1 }), "empty spec".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_block_and_flow_nodes() {
        let src = "name: x\ninput: { topic: lines, format: text }\nsteps:\n  - map: '.'\n";
        let root = parse(src).unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        let (_, input) = &entries[1];
        assert_eq!(input.pos, Pos { line: 2, column: 8 });
        let Kind::Map(fields) = &input.kind else {
            panic!("not a map")
        };
        assert_eq!(
            fields[1].0.pos,
            Pos {
                line: 2,
                column: 24
            }
        );
        assert_eq!(fields[1].1.as_str(), Some("text"));
        let Kind::Seq(steps) = &entries[2].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(steps[0].pos, Pos { line: 4, column: 5 });
        let Kind::Map(step) = &steps[0].kind else {
            panic!("not a map")
        };
        assert_eq!(
            step[0].1.pos,
            Pos {
                line: 4,
                column: 10
            }
        );
        assert_eq!(step[0].1.as_str(), Some("."));
    }

    #[test]
    fn duplicate_keys_and_syntax_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos().map(|p| p.line), Some(3));
        assert!(err.to_string().contains("duplicate field `a`"), "{err}");
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.to_string().contains("YAML syntax error"), "{err}");
        assert!(parse("").is_err());
        assert!(parse("a: &x 1\nb: *x\n").is_err());
    }
}
