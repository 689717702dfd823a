//! Bad specs fail before anything runs, naming the line (and column) and the problem.

use operators::parse_spec;

/// (spec, line of the error, text the message contains)
const CASES: &[(&str, usize, &str)] = &[
    // 1. YAML syntax.
    (
        "name: x\ninput: { topic: lines, format: text\nsteps:\n  - map: '.'\n",
        3,
        "YAML syntax error",
    ),
    // 2. Unknown step.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\n  - flatmap: '.[]'\noutput: { topic: o }\n",
        5,
        "unknown step `flatmap`; steps are map, filter, flat_map, key_by, window, aggregate, join",
    ),
    // 3. Unknown field in a nested mapping.
    (
        "name: x\ninput: { topic: lines, fromat: json }\nsteps:\n  - map: '.'\noutput: { topic: o }\n",
        2,
        "unknown field `fromat` in `input`",
    ),
    // 4. Unknown top-level field.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\noutptu: { topic: o }\n",
        5,
        "unknown field `outptu` in the spec",
    ),
    // 5. Bad duration.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - window: { tumbling: 10 seconds }\n  - aggregate: count\noutput: { topic: o }\n",
        5,
        "bad duration `10 seconds` for `tumbling`",
    ),
    // 6. jq that does not compile (the step's line, jaq's message).
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\n  - filter: '.a | '\noutput: { topic: o }\n",
        5,
        "`filter` expression `.a | ` does not compile: expected term",
    ),
    // 7. Undefined jq function.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: 'upcase'\noutput: { topic: o }\n",
        4,
        "undefined filter `upcase`",
    ),
    // 8. A window (stateful) without a key.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\n  - window: { tumbling: 1m }\n  - aggregate: count\noutput: { topic: o }\n",
        5,
        "`window` needs a key: add a `key_by` step before it",
    ),
    // 9. A running aggregate without a key.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - aggregate: { sum: '.n' }\noutput: { topic: o }\n",
        4,
        "`aggregate` needs a key",
    ),
    // 10. emit: final without a window.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - aggregate: count\noutput: { topic: o, emit: final }\n",
        6,
        "`emit: final` needs a `window` step",
    ),
    // 11. Empty steps.
    (
        "name: x\ninput: { topic: lines }\nsteps: []\noutput: { topic: o }\n",
        3,
        "`steps` is empty",
    ),
    // 12. A window not followed by an aggregate.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - window: { tumbling: 1m }\n  - map: '.'\noutput: { topic: o }\n",
        5,
        "`window` must be followed by an `aggregate` step",
    ),
    // 13. Unknown format.
    (
        "name: x\ninput: { topic: lines, format: avro }\nsteps:\n  - map: '.'\noutput: { topic: o }\n",
        2,
        "unknown format `avro`",
    ),
    // 14. Duplicate field.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\noutput: { topic: o }\nname: y\n",
        6,
        "duplicate field `name` (first given on line 1)",
    ),
    // 15. dead_letter without an errors topic.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\noutput: { topic: o }\non_error: dead_letter\n",
        6,
        "`on_error: dead_letter` needs an `errors: <topic>`",
    ),
    // 16. Missing required field.
    (
        "input: { topic: lines }\nsteps:\n  - map: '.'\noutput: { topic: o }\n",
        1,
        "the spec needs `name`",
    ),
    // 17. Hopping advance larger than size.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - window: { hopping: { size: 1s, advance: 2s } }\n  - aggregate: count\noutput: { topic: o }\n",
        5,
        "advance (2000 ms) is larger than its size (1000 ms)",
    ),
    // 17b. Hopping windows that would multiply every record.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - window: { hopping: { size: 1d, advance: 1ms } }\n  - aggregate: count\noutput: { topic: o }\n",
        5,
        "puts each record in 86400000 windows",
    ),
    // 18. A running aggregate in a spec that emits final.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - window: { tumbling: 1m }\n  - aggregate: count\n  - key_by: '.key'\n  - aggregate: { max: '.value' }\noutput: { topic: o, emit: final }\n",
        8,
        "running aggregate",
    ),
    // 19. A second stateful step without its own key_by.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - aggregate: count\n  - join: { stream: other, within: 1s, on: '.key' }\noutput: { topic: o }\n",
        6,
        "`join` needs its own key: add a `key_by` step between it and the stateful step at line 5",
    ),
    // 20. Output into the input topic.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\noutput:\n  - { topic: other }\n  - { topic: lines }\n",
        7,
        "output topic `lines` is the input topic",
    ),
    // 21. Bad topic name.
    (
        "name: x\ninput: { topic: 'my topic' }\nsteps:\n  - map: '.'\noutput: { topic: o }\n",
        2,
        "topic `my topic` contains ` `",
    ),
    // 22. Unknown aggregate.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - aggregate: median\noutput: { topic: o }\n",
        5,
        "unknown aggregate `median`",
    ),
    // 23. Two kinds in one step (a missing `- `).
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\n    filter: '.a'\noutput: { topic: o }\n",
        5,
        "`filter` starts another step",
    ),
    // 24. Both output and route.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\noutput: { topic: o }\nroute:\n  - { when: 'true', topic: r }\n",
        7,
        "`route` replaces `output`",
    ),
    // 25. Outputs disagreeing on emit.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - window: { tumbling: 1m }\n  - aggregate: count\noutput:\n  - { topic: a, emit: final }\n  - { topic: b, emit: changes }\n",
        9,
        "all outputs must use the same `emit`; the first one (line 8) says `final`",
    ),
    // 26. A nondeterministic jq builtin is fine to compile but `$ENV` is not defined.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '$ENV.HOME'\noutput: { topic: o }\n",
        4,
        "undefined variable `$ENV`",
    ),
    // 27. A bad `late` topic inside a window.
    (
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - window:\n      tumbling: 1m\n      late: 'a/b'\n  - aggregate: count\noutput: { topic: o }\n",
        7,
        "`late`: topic `a/b` contains `/`",
    ),
];

#[test]
fn each_mistake_names_its_line() {
    for (i, (yaml, line, text)) in CASES.iter().enumerate() {
        let err = match parse_spec(yaml) {
            Ok(_) => panic!("case {}: accepted:\n{yaml}", i + 1),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!(
            err.line(),
            Some(*line),
            "case {}: wrong line in `{shown}`",
            i + 1
        );
        assert!(
            shown.starts_with(&format!("line {line}, column ")),
            "case {}: {shown}",
            i + 1
        );
        assert!(
            err.message().contains(text),
            "case {}: `{shown}` does not say `{text}`",
            i + 1
        );
    }
}

#[test]
fn columns_point_at_the_node() {
    let err = parse_spec(
        "name: x\ninput: { topic: lines, fromat: json }\nsteps:\n  - map: '.'\noutput: { topic: o }\n",
    )
    .unwrap_err();
    assert_eq!(err.to_string().split(':').next(), Some("line 2, column 24"));
    let err = parse_spec(
        "name: x\ninput: { topic: lines }\nsteps:\n  - map: '.'\n  - filter: '.a | '\noutput: { topic: o }\n",
    )
    .unwrap_err();
    // The expression's own position.
    assert_eq!(err.pos().map(|p| (p.line, p.column)), Some((5, 13)));
    let err = parse_spec(
        "name: x\ninput: { topic: lines }\nsteps:\n  - key_by: '.k'\n  - aggregate: count\noutput: { topic: o, emit: final }\n",
    )
    .unwrap_err();
    // The `emit` value.
    assert_eq!(err.pos().map(|p| (p.line, p.column)), Some((6, 27)));
}
