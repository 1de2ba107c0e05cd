//! (a) The envelope parser alone against the model.

use super::*;

/// `Envelope::parse` of `bytes` agrees with the model; the panic message names the case.
pub(super) fn check_parse(bytes: &[u8], case: &str) -> Expected {
    let parsed = catch_unwind(AssertUnwindSafe(|| Envelope::parse(bytes)))
        .unwrap_or_else(|_| panic!("{case}: Envelope::parse panicked on {}", show(bytes)));
    let expected = expected(bytes);
    match (&parsed, &expected) {
        (Err(Error::MalformedBody(_)), Expected::Malformed) => {}
        (Err(Error::InvalidField { path, .. }), Expected::Invalid(paths))
            if paths.contains(&path.as_str()) => {}
        (Ok(e), Expected::Valid(f))
            if e.hook_id == f.hook_id
                && e.event_type == f.event_type
                && e.occurred_at == f.occurred_at
                && e.source == f.source
                && e.workspace_id == f.workspace_id
                && e.integration_account_id == f.integration_account_id
                && e.result == f.result => {}
        _ => panic!(
            "{case}: Envelope::parse gave {parsed:?}, the model {expected:?}, for {}",
            show(bytes)
        ),
    }
    expected
}

/// (a) The parser alone: never a panic, only `MalformedBody` / `InvalidField`, always as the
/// model says.
#[test]
fn the_envelope_parser_survives_hostile_bodies_and_agrees_with_the_spec() {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let cases = PARSE_CASES * scale();
    for i in 0..cases {
        let seed = case_seed(1, i);
        let body = Gen::new(seed).body(&i.to_string());
        let kind = match check_parse(&body, &format!("case {i} (seed {seed})")) {
            Expected::Malformed => "400",
            Expected::Invalid(_) => "422",
            Expected::Valid(_) => "valid",
        };
        *counts.entry(kind).or_default() += 1;
    }
    // Fixed cases, beside the generated ones.
    let seed_body = serde_json::to_vec(&seed()).unwrap();
    let mut fixed: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xef\xbb\xbf".to_vec(),
        [&b"\xef\xbb\xbf"[..], &seed_body].concat(),
        [&b"\xff\xfe"[..], &seed_body].concat(),
        b"[".repeat(1_000_000),
        b"{\"a\":".repeat(300_000),
        format!("\"{}\"", "x".repeat(1 << 20)).into_bytes(),
    ];
    for n in NUMBERS.iter().chain(NUMBERS_OVER_NUMERIC) {
        let body = seed_body.clone();
        let text = String::from_utf8(body).unwrap();
        fixed.push(text.replacen('{', &format!("{{\"n\":{n},"), 1).into_bytes());
        fixed.push(text.replace("\"SUCCESS\"", n).into_bytes());
    }
    for token in STRING_TOKENS {
        let (before, after) = String::from_utf8(seed_body.clone())
            .unwrap()
            .split_once("\"sync.complete\"")
            .map(|(b, a)| (b.to_owned(), a.to_owned()))
            .unwrap();
        fixed.push([before.as_bytes(), token, after.as_bytes()].concat());
    }
    for (i, body) in fixed.iter().enumerate() {
        check_parse(body, &format!("fixed case {i}"));
    }
    eprintln!(
        "envelope parser: {cases} generated cases ({counts:?}) and {} fixed ones",
        fixed.len()
    );
    // The generator reaches every outcome often.
    for kind in ["400", "422", "valid"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > cases / 20,
            "{kind}: {counts:?}"
        );
    }
}
