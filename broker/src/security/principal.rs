//! Principals: `User:ANONYMOUS` on plaintext listeners, `User:<name>` after SASL, and on TLS
//! listeners the client certificate's subject mapped by `ssl.principal.mapping.rules`
//! (Kafka's `SslPrincipalMapper`: `DEFAULT` keeps the distinguished name; a
//! `RULE:pattern/replacement/[LU]` whose pattern matches the whole name replaces it).

use regex::Regex;

/// The principal of an unauthenticated connection, as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[derive(Debug)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug)]
pub struct MappingRules(Vec<Rule>);

/// Reads up to the next unescaped `/`; returns (text with `\/` unescaped, rest after `/`).
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    if n != '/' {
                        out.push('\\');
                    }
                    out.push(n);
                }
            }
            '/' => return Some((out, &s[i + 1..])),
            _ => out.push(c),
        }
    }
    None
}

impl MappingRules {
    pub fn parse(value: &str) -> Result<MappingRules, String> {
        let mut rules = Vec::new();
        let mut rest = value.trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("RULE:") {
                let (pattern, r) = until_slash(r).ok_or("RULE: needs pattern/replacement/")?;
                let (replacement, r) = until_slash(r).ok_or("RULE: needs pattern/replacement/")?;
                let (case, r) = match r.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &r[1..]),
                    _ => (None, r),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("bad pattern in ssl.principal.mapping.rules: {e}"))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement,
                    case,
                });
                rest = r;
            } else {
                return Err(format!(
                    "ssl.principal.mapping.rules: expected DEFAULT or RULE:pattern/replacement/[LU] at {rest:?}"
                ));
            }
            rest = rest.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(MappingRules(rules))
    }

    /// The principal name for a certificate subject (RFC 2253 form, `CN=a,OU=b`); `None` when
    /// no rule matches (Kafka then refuses the connection).
    pub fn map(&self, distinguished_name: &str) -> Option<String> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Some(distinguished_name.to_string()),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if pattern.is_match(distinguished_name) {
                        let out = pattern
                            .replace(distinguished_name, replacement.as_str())
                            .into_owned();
                        return Some(match case {
                            Some('L') => out.to_lowercase(),
                            Some('U') => out.to_uppercase(),
                            _ => out,
                        });
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_mapping_rules() -> Result<(), String> {
        let r = MappingRules::parse("DEFAULT")?;
        assert_eq!(r.map("CN=alice,OU=eng").as_deref(), Some("CN=alice,OU=eng"));
        let r = MappingRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L, DEFAULT",
        )?;
        assert_eq!(
            r.map("CN=kafka1,OU=ServiceUsers,O=Org").as_deref(),
            Some("kafka1")
        );
        assert_eq!(
            r.map("CN=Duke,OU=JavaSoft").as_deref(),
            Some("duke@javasoft")
        );
        assert_eq!(r.map("O=only").as_deref(), Some("O=only"));
        let strict = MappingRules::parse("RULE:^CN=([a-z]+)$/$1/U")?;
        assert_eq!(strict.map("CN=bob").as_deref(), Some("BOB"));
        assert_eq!(strict.map("CN=bob,O=x"), None);
        assert!(MappingRules::parse("RULE:(/x").is_err());
        assert!(MappingRules::parse("NOPE").is_err());
        Ok(())
    }
}
