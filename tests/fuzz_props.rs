//! Property-based fuzzing on stable Rust: the parsers that read what pages
//! and cards send never panic, and always give a structured answer.

use cardgate::apdu::{self, Command, Response, StatusWord};
use cardgate::card::openpgp::PwStatus;
use proptest::prelude::*;
use serde_json::{Value, json};

/// The JSON-RPC error codes a refused request may get (docs/errors.md):
/// parse error, invalid request, method not found, invalid params,
/// operation failed.
const CODES: [i64; 5] = [-32700, -32600, -32601, -32602, -32000];

fn check_incoming(text: &str) {
    for (code, data) in cardgate::testing::parse_errors(text) {
        assert!(CODES.contains(&code), "{code} {data}");
        assert!(data["code"].is_string(), "{code} {data}");
    }
}

/// JSON values shaped like requests, with the wrong types in the wrong places.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9 =+/]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2.0"),
            Just("login"),
            Just("init"),
            Just("pin"),
            Just("checkConstraints"),
            Just("resetCode")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("jsonrpc".to_string()),
                    Just("id".to_string()),
                    Just("method".to_string()),
                    Just("params".to_string()),
                    Just("reader".to_string()),
                    Just("pin".to_string()),
                    Just("value".to_string()),
                    Just("so".to_string()),
                    Just("type".to_string()),
                    Just("data".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn json_rpc_parser_never_panics_on_text(text in ".{0,300}") {
        check_incoming(&text);
    }

    #[test]
    fn json_rpc_parser_handles_any_json(v in json_value()) {
        check_incoming(&v.to_string());
    }

    #[test]
    fn json_rpc_parser_handles_requests_with_random_params(
        method in prop_oneof![Just("hello"), Just("getReaders"), Just("getPinStatus"), Just("login"),
                              Just("change"), Just("init"), Just("logout"), Just("getConstraints"),
                              Just("checkConstraints")],
        params in json_value(),
        id in prop_oneof![Just(json!(1)), Just(json!("x")), Just(Value::Null), Just(json!([1]))],
    ) {
        let req = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        check_incoming(&req.to_string());
    }

    #[test]
    fn response_parser_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        match Response::parse(&raw) {
            Ok(r) => {
                prop_assert_eq!(r.data.len(), raw.len() - 2);
                prop_assert_eq!(r.sw.to_u16(), u16::from_be_bytes([raw[raw.len() - 2], raw[raw.len() - 1]]));
            }
            Err(e) => prop_assert!(raw.len() < 2, "{e}"),
        }
    }

    /// A hostile card answering anything: the exchange ends, without panic,
    /// within a bounded number of round trips.
    #[test]
    fn exchange_is_bounded_with_a_hostile_card(
        replies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..80),
        le in prop::option::of(1usize..=256),
    ) {
        let mut cmd = Command::new(0, 0xCA, 0, 0xC4);
        if let Some(le) = le { cmd = cmd.with_le(le); }
        let mut round = 0usize;
        let result = apdu::exchange(&cmd, |_bytes: &[u8]| {
            let r = replies[round % replies.len()].clone();
            round += 1;
            Ok::<_, cardgate::transport::TransportError>(r)
        });
        prop_assert!(round <= apdu::MAX_GET_RESPONSE_ROUNDS + 2, "{round} round trips");
        if let Ok(r) = result {
            prop_assert!(r.sw != StatusWord::WrongLe(0) || round <= 2);
        }
    }

    #[test]
    fn pw_status_parser_never_panics(raw in prop::collection::vec(any::<u8>(), 0..20)) {
        if let Some(s) = PwStatus::parse(&raw) {
            prop_assert!(s.max_pw1 >= 1 && s.max_pw1 <= 127);
        }
    }

    /// Policy files: arbitrary text and mutated valid files are refused with
    /// a message naming the file (and the line where there is one), never a panic.
    #[test]
    fn policy_file_parser_never_panics(
        text in prop_oneof![
            ".{0,200}",
            prop::collection::vec(prop_oneof![
                Just("[match]\n"), Just("profile = \"piv\"\n"), Just("atr = \"3B(\"\n"),
                Just("[pins.pin]\n"), Just("constraints = [\n"), Just("]\n"),
                Just("{ type = \"minLength\", minLength = 4 },\n"),
                Just("{ type = \"minMaxLength\", minLength = 9, maxLength = 2 },\n"),
                Just("{ type = \"nope\" },\n"), Just("{ type = \"numeric\" },\n"),
                Just("tryCountLow = -1\n"), Just("label = 5\n"), Just("x = \"\u{0}\"\n"),
            ], 0..12).prop_map(|parts| parts.concat()),
        ],
    ) {
        let mut set = cardgate::policy::PolicySet::empty();
        if let Err(e) = set.insert_str("fuzz.toml", &text, 1) {
            prop_assert!(e.file.contains("fuzz"), "{}", e.message);
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn status_word_round_trip(sw in any::<u16>()) {
        prop_assert_eq!(StatusWord::from_u16(sw).to_u16(), sw);
    }
}
