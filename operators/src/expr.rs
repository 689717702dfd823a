//! jq expressions, compiled and run with jaq (`jaq-core`, `jaq-std`, `jaq-json`).
//!
//! Every expression is compiled on its own with jaq's standard library (regular expressions
//! such as `test`, `scan`, `sub` come from `jaq-std`'s default `regex` feature) and one global
//! variable, `$record`. Filters whose result depends on something other than their input are
//! replaced, because a transform must give the same output when it runs a record again after a
//! restart: `now`, `env`, `localtime`, `strflocaltime` and `halt` fail with an error value,
//! and `debug`/`stderr` print nothing. `$ENV`, `input`, `inputs` and modules are not defined,
//! so expressions using them do not compile.
//!
//! Running an expression is bounded in outputs ([`MAX_OUTPUTS`]) but not in time: a program
//! such as `last(range(1e15))` keeps its task busy. jaq has no fuel counter to stop it.

use jaq_core::data::JustLut;
use jaq_core::load::{lex, parse, Arena, File, Loader};
use jaq_core::native::{self, bome, Fun};
use jaq_core::{Compiler, Ctx, Cv, Error, Vars};
use jaq_json::Val;

/// The data type filters run on: values with no global data beyond the lookup table.
type D = JustLut<Val>;

/// The most values one evaluation may produce; more is an error (a runaway `flat_map`).
pub(crate) const MAX_OUTPUTS: usize = 1_000_000;

/// Longest error text kept from jaq (its messages quote the offending value in full).
const MAX_ERROR_LEN: usize = 512;

/// A compiled expression.
pub(crate) struct Program {
    filter: jaq_core::Filter<D>,
    /// Whether the source mentions `$record` (if not, callers need not build it).
    pub(crate) uses_record: bool,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("uses_record", &self.uses_record)
            .finish_non_exhaustive()
    }
}

macro_rules! denied {
    ($name:ident, $what:literal) => {
        fn $name(_cv: Cv<'_, D>) -> jaq_core::ValXs<'_, Val> {
            bome(Err(Error::str(concat!(
                "`",
                $what,
                "` is not available in transforms: a record must give the same result every time it runs"
            ))))
        }
    };
}
denied!(deny_now, "now");
denied!(deny_env, "env");
denied!(deny_localtime, "localtime");
denied!(deny_strflocaltime, "strflocaltime");
denied!(deny_halt, "halt");

fn silent(_cv: Cv<'_, D>) -> jaq_core::ValXs<'_, Val> {
    Box::new(std::iter::empty())
}

/// The native filters: jaq's, with the nondeterministic ones replaced.
fn funs() -> impl Iterator<Item = Fun<D>> {
    jaq_core::funs::<D>()
        .chain(jaq_std::funs::<D>())
        .chain(jaq_json::funs::<D>())
        .map(|(name, args, f)| {
            let replacement: Option<jaq_core::RunPtr<D>> = match name {
                "now" => Some(deny_now),
                "env" => Some(deny_env),
                "localtime" => Some(deny_localtime),
                "strflocaltime" => Some(deny_strflocaltime),
                "halt" => Some(deny_halt),
                "debug_empty" | "stderr_empty" => Some(silent),
                _ => None,
            };
            match replacement {
                Some(run) => native::run::<D>((name, args, run)),
                None => (name, args, f),
            }
        })
}

/// Character offset of `part` (a slice of `code`, possibly empty at its end) in `code`.
fn offset_in(code: &str, part: &str) -> usize {
    let start = (part.as_ptr() as usize).saturating_sub(code.as_ptr() as usize);
    let start = start.min(code.len());
    code.get(..start).map_or(start, |s| s.chars().count())
}

fn lex_expect(e: &lex::Expect<&str>) -> String {
    match e {
        lex::Expect::Digit => "a digit".into(),
        lex::Expect::Ident => "an identifier".into(),
        lex::Expect::Delim(d) => format!("a closing delimiter for `{d}`"),
        lex::Expect::Escape => "a string escape sequence".into(),
        lex::Expect::Unicode => "a 4-digit hexadecimal code point".into(),
        lex::Expect::Token => "a token".into(),
        _ => "something else".into(),
    }
}

fn found(part: &str) -> String {
    if part.is_empty() {
        "the end of the expression".into()
    } else {
        let shown: String = part.chars().take(20).collect();
        format!("`{shown}`")
    }
}

impl Program {
    /// Compiles `code`; the error is jaq's message with the character offset in `code`.
    pub(crate) fn compile(code: &str) -> Result<Self, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errs| {
                let mut msgs = Vec::new();
                for (_file, err) in errs {
                    match err {
                        jaq_core::load::Error::Io(v) => {
                            for (path, e) in v {
                                msgs.push(format!("cannot load module `{path}`: {e}"));
                            }
                        }
                        jaq_core::load::Error::Lex(v) => {
                            for (expect, part) in v {
                                msgs.push(format!(
                                    "expected {} at character {}, found {}",
                                    lex_expect(&expect),
                                    offset_in(code, part) + 1,
                                    found(part)
                                ));
                            }
                        }
                        jaq_core::load::Error::Parse(v) => {
                            for (expect, part) in v {
                                msgs.push(format!(
                                    "expected {} at character {}, found {}",
                                    parse_expect(&expect),
                                    offset_in(code, part) + 1,
                                    found(part)
                                ));
                            }
                        }
                    }
                }
                msgs.join("; ")
            })?;
        let filter = Compiler::<_, D>::default()
            .with_funs(funs())
            .with_global_vars(["$record"])
            .compile(modules)
            .map_err(|errs| {
                let mut msgs = Vec::new();
                for (_file, undefined) in errs {
                    for (name, what) in undefined {
                        msgs.push(format!(
                            "undefined {} `{name}` at character {}",
                            what.as_str(),
                            offset_in(code, name) + 1
                        ));
                    }
                }
                msgs.join("; ")
            })?;
        Ok(Self {
            filter,
            uses_record: code.contains("$record"),
        })
    }

    /// Runs the program on `input` with `$record` bound to `record`, calling `each` for every
    /// output until it returns false. An error (from jaq or past [`MAX_OUTPUTS`]) stops the run.
    pub(crate) fn run(
        &self,
        input: Val,
        record: &Val,
        mut each: impl FnMut(Val) -> bool,
    ) -> Result<(), String> {
        let ctx = Ctx::<D>::new(&self.filter.lut, Vars::new([record.clone()]));
        let mut n = 0usize;
        for out in self.filter.id.run((ctx, input)) {
            match out {
                Ok(v) => {
                    n += 1;
                    if n > MAX_OUTPUTS {
                        return Err(format!("produced more than {MAX_OUTPUTS} values"));
                    }
                    if !each(v) {
                        return Ok(());
                    }
                }
                Err(exn) => {
                    return Err(match exn.get_err() {
                        Ok(e) => truncate(e.to_string()),
                        Err(_) => "the expression stopped (halt)".to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// All outputs.
    pub(crate) fn all(&self, input: Val, record: &Val) -> Result<Vec<Val>, String> {
        let mut outs = Vec::new();
        self.run(input, record, |v| {
            outs.push(v);
            true
        })?;
        Ok(outs)
    }

    /// Exactly one output, else an error naming `what` the expression computes.
    pub(crate) fn one(&self, input: Val, record: &Val, what: &str) -> Result<Val, String> {
        let mut first = None;
        let mut count = 0usize;
        self.run(input, record, |v| {
            count += 1;
            if first.is_none() {
                first = Some(v);
            }
            count < 2
        })?;
        match (first, count) {
            (Some(v), 1) => Ok(v),
            (None, _) => Err(format!("{what} produced no value")),
            (Some(_), _) => Err(format!(
                "{what} produced more than one value (use flat_map to make several records)"
            )),
        }
    }

    /// Whether the first output is truthy (not `false`, not `null`); no output is false.
    pub(crate) fn truthy(&self, input: Val, record: &Val) -> Result<bool, String> {
        let mut result = false;
        self.run(input, record, |v| {
            result = !matches!(v, Val::Null | Val::Bool(false));
            false
        })?;
        Ok(result)
    }
}

fn parse_expect(e: &parse::Expect<&str>) -> String {
    match e {
        parse::Expect::Just(s) => format!("`{s}`"),
        other => other.as_str().to_string(),
    }
}

/// Shortens an error message on a character boundary.
pub(crate) fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Val {
        Val::from(x.to_string())
    }

    #[test]
    fn word_count_expression_and_regex() {
        let p = Program::compile(r#"ascii_downcase | [scan("[a-z]+")] | .[]"#).unwrap();
        let out = p.all(s("Hello, World hello"), &Val::Null).unwrap();
        assert_eq!(out, vec![s("hello"), s("world"), s("hello")]);
        assert!(!p.uses_record);
        let p = Program::compile("$record.offset + 1").unwrap();
        assert!(p.uses_record);
    }

    #[test]
    fn compile_errors_name_the_place() {
        let e = Program::compile(".a | ").unwrap_err();
        assert!(e.contains("character"), "{e}");
        let e = Program::compile("nosuchfn(1)").unwrap_err();
        assert!(e.contains("undefined filter `nosuchfn`"), "{e}");
        let e = Program::compile("$ENV").unwrap_err();
        assert!(e.contains("undefined variable"), "{e}");
        let e = Program::compile("\"abc").unwrap_err();
        assert!(e.contains("expected"), "{e}");
    }

    #[test]
    fn nondeterministic_filters_fail() {
        for code in ["now", "env", "0 | localtime", "halt", "halt_error"] {
            let p = Program::compile(code).unwrap();
            let e = p.all(Val::Null, &Val::Null).unwrap_err();
            assert!(e.contains("not available in transforms"), "{code}: {e}");
        }
        let p = Program::compile("debug | . + 1").unwrap();
        assert_eq!(
            p.all(Val::from(1isize), &Val::Null).unwrap(),
            vec![Val::from(2isize)]
        );
    }

    #[test]
    fn errors_are_values() {
        let p = Program::compile(".x + 1").unwrap();
        let e = p.all(s("a string"), &Val::Null).unwrap_err();
        assert!(e.contains("cannot index"), "{e}");
    }
}
