use std::collections::HashSet;

use super::*;

const MS_PER_MIN: u32 = 60_000;
const fn at(h: u32, m: u32) -> u32 {
    (h * 60 + m) * MS_PER_MIN
}

pub(crate) fn shipped() -> Instruments {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
    Instruments::load(&path).unwrap()
}

#[test]
fn shipped_file_covers_every_exchange_with_real_specs() {
    let all = shipped();
    for exchange in Exchange::ALL {
        let n = all.products().iter().filter(|p| p.exchange == exchange && p.kind == Kind::Future).count();
        assert!(n >= 5, "{exchange:?} has {n} futures products");
    }
    let rb = all.spec_for("rb2510").unwrap();
    assert_eq!((rb.exchange, rb.price_tick, rb.volume_multiple), (Exchange::Shfe, 1.0, 10));
    assert_eq!(rb.night_session, Some(Segment { start_ms: at(21, 0), end_ms: at(23, 0) }));
    let au = all.product("au").unwrap();
    assert_eq!((au.price_tick, au.volume_multiple), (0.02, 1000));
    assert_eq!(au.night_session, Some(Segment { start_ms: at(21, 0), end_ms: at(2, 30) }));
    let cu = all.product("cu").unwrap();
    assert_eq!(cu.night_session.map(|s| s.end_ms), Some(at(1, 0)));
    let sc = all.spec_for("sc2607").unwrap();
    assert_eq!((sc.exchange, sc.price_tick, sc.volume_multiple), (Exchange::Ine, 0.1, 1000));
    let sr = all.spec_for("SR609").unwrap();
    assert_eq!((sr.exchange, sr.volume_multiple), (Exchange::Czce, 10));
    let i_ore = all.spec_for("i2609").unwrap();
    assert_eq!((i_ore.exchange, i_ore.price_tick, i_ore.volume_multiple), (Exchange::Dce, 0.5, 100));
    let index = all.spec_for("IF2606").unwrap();
    assert_eq!((index.exchange, index.price_tick, index.volume_multiple), (Exchange::Cffex, 0.2, 300));
    let lc = all.spec_for("lc2609").unwrap();
    assert_eq!((lc.exchange, lc.price_tick, lc.volume_multiple), (Exchange::Gfex, 20.0, 1));
    let hc = all.spec_for("hc2605").expect("hot-rolled coil, the issue's example, is listed");
    assert_eq!((hc.exchange, hc.volume_multiple), (Exchange::Shfe, 10));
    assert!(all.spec_for("zz2501").is_none());
    assert!(all.spec_for("sr609").is_none(), "codes are case-sensitive");
}

/// The consistency of the whole table: what a wrong entry would break.
#[test]
fn table_wide_consistency() {
    let all = shipped();
    let futures: Vec<_> = all.products().iter().filter(|p| p.kind == Kind::Future).collect();
    assert!(futures.len() >= 80, "only {} futures products", futures.len());
    let mut codes = HashSet::new();
    for p in all.products() {
        assert!(codes.insert((p.code.as_str(), p.kind)), "{} listed twice", p.code);
        assert!(p.price_tick > 0.0 && p.volume_multiple >= 1, "{}", p.code);
        assert!(!p.name.is_empty(), "{} has no name", p.code);
        assert!(!p.day_sessions.is_empty(), "{}", p.code);
        for s in &p.day_sessions {
            assert!(!s.wraps() && s.start_ms >= at(8, 0) && s.end_ms <= at(15, 30), "{}: {s:?}", p.code);
        }
        for pair in p.day_sessions.windows(2) {
            assert!(pair[0].end_ms <= pair[1].start_ms, "{}: sessions out of order", p.code);
        }
        if let Some(night) = p.night_session {
            assert!(
                matches!(p.exchange, Exchange::Shfe | Exchange::Ine | Exchange::Dce | Exchange::Czce),
                "{}",
                p.code
            );
            assert_eq!(night.start_ms, at(21, 0), "{}", p.code);
            assert!([at(23, 0), at(1, 0), at(2, 30)].contains(&night.end_ms), "{}: night ends {night:?}", p.code);
        }
        match p.kind {
            Kind::Future => {
                assert!(!p.instruments.is_empty(), "{} lists no instruments for the simulator", p.code);
                for id in &p.instruments {
                    assert_eq!(all.spec_for(id).map(|s| &s.code), Some(&p.code), "{id}");
                    let month_digits = id.len() - p.code.len();
                    assert_eq!(month_digits, if p.exchange == Exchange::Czce { 3 } else { 4 }, "{id}");
                }
                let code_case_upper = p.code.bytes().all(|b| b.is_ascii_uppercase());
                let upper_exchange = matches!(p.exchange, Exchange::Czce | Exchange::Cffex);
                assert_eq!(code_case_upper, upper_exchange, "{}: code case of {:?}", p.code, p.exchange);
            }
            Kind::Option { id_form } => {
                let underlying = all.product(p.underlying.as_deref().unwrap()).unwrap();
                assert_eq!(underlying.exchange, p.exchange);
                assert_eq!(
                    (p.day_sessions.clone(), p.night_session),
                    (underlying.day_sessions.clone(), underlying.night_session)
                );
                let expected = match p.exchange {
                    Exchange::Shfe | Exchange::Ine | Exchange::Czce => IdForm::Compact,
                    _ => IdForm::Dash,
                };
                assert_eq!(id_form, expected, "{}", p.code);
            }
        }
    }
}

#[test]
fn option_ids_of_each_exchange_resolve_to_their_product() {
    let all = shipped();
    for (id, code, underlying) in [
        ("m2605-C-3000", "m", "m"),
        ("m2605-P-2800", "m", "m"),
        ("SR605C6000", "SR", "SR"),
        ("SR605P5800", "SR", "SR"),
        ("cu2606C80000", "cu", "cu"),
        ("au2606P760", "au", "au"),
        ("sc2607C500", "sc", "sc"),
        ("IO2612-C-4000", "IO", "IF"),
        ("MO2612-P-6000", "MO", "IM"),
        ("HO2612-C-2800", "HO", "IH"),
        ("si2606-C-9000", "si", "si"),
    ] {
        let spec = all.spec_for(id).unwrap_or_else(|| panic!("{id} does not resolve"));
        assert!(matches!(spec.kind, Kind::Option { .. }), "{id}: {:?}", spec.kind);
        assert_eq!((spec.code.as_str(), spec.underlying.as_deref()), (code, Some(underlying)), "{id}");
    }
    // The future of the same code is still the future; a wrong form resolves to nothing.
    assert_eq!(all.spec_for("m2605").unwrap().kind, Kind::Future);
    for bad in ["m2605C3000", "cu2606-C-80000", "IO2612", "m2605-X-3000", "m2605-C-", "m26-C-3000", "SP m2605&m2609"] {
        assert!(all.spec_for(bad).is_none(), "{bad} resolved to {:?}", all.spec_for(bad).map(|s| &s.code));
    }
}

#[test]
fn contract_forms() {
    assert_eq!(contract_form("rb2605"), Some(Kind::Future));
    assert_eq!(contract_form("SR605"), Some(Kind::Future));
    assert_eq!(contract_form("m2605-C-3000"), Some(Kind::Option { id_form: IdForm::Dash }));
    assert_eq!(contract_form("SR605C6000"), Some(Kind::Option { id_form: IdForm::Compact }));
    for other in ["rb", "rb26", "rb26055", "rb2605&rb2610", "2605", "", "m2605-C-30a0"] {
        assert_eq!(contract_form(other), None, "{other}");
    }
}

#[test]
fn product_of_takes_leading_letters() {
    assert_eq!(product_of("rb2510"), "rb");
    assert_eq!(product_of("SR509"), "SR");
    assert_eq!(product_of("IF2506"), "IF");
    assert_eq!(product_of("m2509-C-3000"), "m");
    assert_eq!(product_of("T2509"), "T");
    assert_eq!(product_of("2509"), "");
    assert_eq!(product_of(""), "");
}

#[test]
fn sessions_include_call_auction_and_the_closing_second() {
    let all = shipped();
    let rb = all.product("rb").unwrap();
    assert!(!rb.in_session(at(20, 54)));
    assert!(rb.in_session(at(20, 55)), "night call auction");
    assert!(rb.in_session(at(22, 59) + 59_500));
    assert!(rb.in_session(at(23, 0) + 500), "closing tick 23:00:00.500");
    assert!(!rb.in_session(at(23, 0) + 1000));
    assert!(!rb.in_session(at(3, 0)));
    assert!(rb.in_session(at(8, 55)), "day call auction");
    assert!(!rb.in_session(at(8, 54)));
    assert!(!rb.in_session(at(10, 20)), "morning break");
    assert!(!rb.in_session(at(10, 29)), "no auction before the second segment");
    assert!(rb.in_session(at(10, 30)));
    assert!(!rb.in_session(at(12, 0)), "lunch");
    assert!(rb.in_session(at(14, 59)));
    assert!(!rb.in_session(at(15, 0) + 1000));
    let au = all.product("au").unwrap();
    assert!(au.in_session(at(0, 0)) && au.in_session(at(2, 29)) && au.in_session(at(2, 30) + 999));
    assert!(!au.in_session(at(2, 31)));
    assert!(au.in_session(at(23, 30)));
    let index = all.product("IF").unwrap();
    assert!(!index.in_session(at(21, 0)), "CFFEX has no night session");
    assert!(!index.in_session(at(9, 24)));
    assert!(index.in_session(at(9, 25)), "CFFEX call auction 09:25-09:30");
    assert!(index.in_session(at(11, 29)) && !index.in_session(at(12, 0)) && index.in_session(at(13, 0)));
    let bond = all.product("T").unwrap();
    assert!(bond.in_session(at(15, 14)) && !bond.in_session(at(15, 16)));
}

#[test]
fn trading_time_between_two_instants_follows_the_calendar() {
    let all = shipped();
    let calendar = crate::calendar::tests::shipped();
    let rb = all.product("rb").unwrap();
    let local =
        |ymd: u32, h: i64, m: i64| Date::from_ymd(ymd).unwrap().days * i64::from(DAY_MS) + (h * 60 + m) * 60_000;
    // Tuesday 10:10 → 10:40: 5 min before the break, 10 after.
    assert_eq!(rb.session_ms_between(local(20250513, 10, 10), local(20250513, 10, 40), &calendar), 15 * 60_000);
    // Tuesday 15:00 → 21:00: none.
    assert_eq!(rb.session_ms_between(local(20250513, 15, 0), local(20250513, 21, 0), &calendar), 0);
    // Friday 23:00 → Monday 09:00: none (no Saturday or Sunday session).
    assert_eq!(rb.session_ms_between(local(20250509, 23, 0), local(20250512, 9, 0), &calendar), 0);
    // Friday 22:00 → Monday 09:30: an hour of Friday night, half an hour of Monday.
    assert_eq!(rb.session_ms_between(local(20250509, 22, 0), local(20250512, 9, 30), &calendar), 90 * 60_000);
    // A night session across midnight (cu 21:00-01:00) counts on both sides.
    let cu = all.product("cu").unwrap();
    assert_eq!(cu.session_ms_between(local(20250513, 23, 30), local(20250514, 0, 30), &calendar), 60 * 60_000);
    // Thursday 2026-04-02 15:00 → Tuesday 04-07 09:30 across Qingming (Monday 04-06): Thursday
    // night (120 min), all of Friday (225), no Friday night before the holiday, nothing on the
    // weekend or the Monday, Tuesday's first half hour.
    assert_eq!(
        rb.session_ms_between(local(20260402, 15, 0), local(20260407, 9, 30), &calendar),
        (120 + 225 + 30) * 60_000
    );
}

#[test]
fn segments_parse_strictly() {
    assert_eq!(Segment::parse("21:00-02:30"), Some(Segment { start_ms: at(21, 0), end_ms: at(2, 30) }));
    assert!(Segment::parse("21:00-02:30").unwrap().wraps());
    assert_eq!(Segment::parse("21:00-02:30").unwrap().len_ms(), at(5, 30));
    for bad in ["21:00", "21:00-24:00", "9:00-10:15", "09:00-10:60", "09:00–10:15", "aa:bb-cc:dd"] {
        assert_eq!(Segment::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn bad_file_reports_every_problem_with_file_and_product() {
    let text = r#"
        [[product]]
        exchange = "SHFE"
        code = "rb"
        price_tick = 0.0
        volume_multiple = 10
        day_sessions = ["09:00-10:15"]
        instruments = ["rb2510"]
        reference_price = 3300.0

        [[product]]
        exchange = "NYMEX"
        code = "cl"
        price_tick = 0.01
        volume_multiple = 1000
        day_sessions = ["09:00-15:00"]
        reference_price = 70.0
    "#;
    let err = Instruments::from_toml_str(text, Path::new("/etc/qilin/instruments.toml")).unwrap_err();
    let InstrumentsError::Invalid { problems, .. } = &err else { panic!("{err}") };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("product[0] (SHFE rb): price_tick 0"), "{}", problems[0]);
    assert!(problems[1].starts_with("product[1] (NYMEX cl): exchange \"NYMEX\""), "{}", problems[1]);
    let message = err.to_string();
    assert!(message.contains("/etc/qilin/instruments.toml has 2 problem(s)"), "{message}");
}

#[test]
fn more_problems_are_all_listed() {
    let text = r#"
        [[product]]
        exchange = "CFFEX"
        code = "m"
        price_tick = 1.0
        volume_multiple = 0
        day_sessions = ["15:00-09:00", "bad"]
        night_session = "21:00-23:00"
        instruments = ["rb2510", "m2605-C-3000"]
        reference_price = 2900.5
        options = { code = "m1", id_form = "dash", price_tick = 0.0, volume_multiple = 0 }
    "#;
    let Err(InstrumentsError::Invalid { problems, .. }) = Instruments::from_toml_str(text, Path::new("x.toml")) else {
        panic!("expected invalid")
    };
    let wanted = [
        "volume_multiple",
        "not a multiple",
        "ends before",
        "\"bad\"",
        "no night session",
        "\"rb2510\"",
        "\"m2605-C-3000\"",
        "options.code",
        "options.price_tick",
        "options.volume_multiple",
    ];
    assert_eq!(problems.len(), wanted.len(), "{problems:?}");
    for (problem, word) in problems.iter().zip(wanted) {
        assert!(problem.starts_with("product[0] (CFFEX m): ") && problem.contains(word), "{problem} lacks {word}");
    }
}

#[test]
fn unknown_keys_and_missing_files_name_the_file() {
    let text = "[[product]]\nexchange = \"SHFE\"\ncode = \"rb\"\ntick = 1.0\n";
    let err = Instruments::from_toml_str(text, Path::new("conf/i.toml")).unwrap_err().to_string();
    assert!(err.contains("conf/i.toml") && err.contains("tick"), "{err}");
    let err = Instruments::load(Path::new("/nonexistent/instruments.toml")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/instruments.toml"), "{err}");
}

#[test]
fn unknown_products_get_their_exchanges_default_sessions() {
    let spec = ProductSpec::stand_in(Exchange::Shfe);
    assert!(spec.unknown && spec.night_session.is_none() && spec.code.is_empty());
    assert!(spec.in_session(at(9, 30)) && !spec.in_session(at(21, 30)));
    let bond = ProductSpec::stand_in(Exchange::Cffex);
    assert!(bond.in_session(at(15, 10)) && !bond.in_session(at(9, 0)));
}

/// The minute map answers exactly what the segments do, for every product of the table (futures,
/// options and the stand-ins) at every half second of the day.
#[test]
fn session_maps_agree_with_the_segments_everywhere() {
    let all = shipped();
    let stand_ins = Exchange::ALL.map(ProductSpec::stand_in);
    let mut checked = 0u64;
    for spec in all.products().iter().chain(stand_ins.iter()) {
        for ms in (0..DAY_MS).step_by(500) {
            assert_eq!(spec.session_map.contains(ms), spec.in_session_by_segments(ms), "{} at {ms}", spec.code);
            checked += 1;
        }
    }
    assert!(checked > 150 * 172_800, "{checked}");
    // A map out of step with its segments is caught in debug builds.
    let mut rb = all.product("rb").unwrap().clone();
    rb.night_session = None;
    let caught = std::panic::catch_unwind(|| rb.in_session(21 * 3_600_000 + 30 * 60_000));
    assert_eq!(caught.is_err(), cfg!(debug_assertions));
}
