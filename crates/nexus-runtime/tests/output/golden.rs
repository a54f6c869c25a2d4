//! Golden tests: each `tests/golden/NAME.bt` was run through the real
//! bpftrace 0.17 on this machine kind (`tests/golden/capture.sh`), its stdout
//! kept as `NAME.txt` (text) and `NAME.json` (`-f json`). Here the same data
//! is rebuilt through nexus-runtime's API — aggregations fed the same values
//! through `Hist::record`/`LHist::record`, printf sites given the same format
//! strings and arguments — and pushed through the sinks; the bytes must match.
//!
//! bpftrace's JSON mode also writes two blank lines before the end-of-run
//! maps; JSON Lines has none, so blank lines are dropped from the expected
//! JSON (the only normalisation).

use nexus_runtime::{
    EventMeta, Hist, JsonOptions, JsonSink, LHist, MapDump, MapKind, MapPrintOptions, MapValue,
    ParsedFormat, PrintfEvent, PrintfSite, Sink, TextSink, Value,
};

/// One step of a bpftrace program's output.
enum Step {
    Printf(&'static str, Vec<Value>),
    Print(MapDump, MapPrintOptions),
    PrintValue(Value),
}

fn i(v: i64) -> Value {
    Value::i64(v)
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn map(name: &str, kind: MapKind, entries: Vec<(Vec<Value>, MapValue)>) -> MapDump {
    MapDump {
        name: name.into(),
        kind,
        entries,
    }
}

fn hist(values: &[i64]) -> MapValue {
    let mut h = Hist::default();
    for &v in values {
        h.record(v);
    }
    MapValue::Hist(h)
}

fn lhist(min: i64, max: i64, step: i64, values: &[i64]) -> MapValue {
    let mut l = LHist::new(min, max, step);
    for &v in values {
        l.record(v);
    }
    MapValue::LHist(l)
}

fn stats(values: &[i64]) -> MapValue {
    MapValue::Stats {
        count: values.len() as u64,
        total: values.iter().sum(),
    }
}

fn avg(values: &[i64]) -> MapValue {
    MapValue::Avg {
        count: values.len() as u64,
        total: values.iter().sum(),
    }
}

/// Runs the steps and the end-of-run maps through a sink, as a session would.
fn run(sink: &mut dyn Sink, steps: &[Step], exit_maps: &[MapDump]) {
    sink.attached_probes(1).unwrap();
    let meta = EventMeta::default();
    for step in steps {
        match step {
            Step::Printf(fmt, args) => {
                let site = PrintfSite {
                    format: ParsedFormat::parse(fmt),
                    arg_names: Vec::new(),
                    probe: "BEGIN".into(),
                };
                let event = PrintfEvent {
                    site: &site,
                    meta: &meta,
                    args,
                };
                sink.printf(&event).unwrap();
            }
            Step::Print(m, opts) => sink.map(m, opts).unwrap(),
            Step::PrintValue(v) => sink.value(v).unwrap(),
        }
    }
    sink.exit_maps(exit_maps).unwrap();
    sink.finish().unwrap();
}

fn check(name: &str, steps: &[Step], exit_maps: &[MapDump]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/");
    let expected_text = std::fs::read(format!("{dir}{name}.txt")).unwrap();
    let expected_json = std::fs::read_to_string(format!("{dir}{name}.json")).unwrap();

    let mut text = TextSink::new(Vec::new());
    run(&mut text, steps, exit_maps);
    let text = text.into_inner().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&text),
        String::from_utf8_lossy(&expected_text),
        "text output of {name}.bt differs from bpftrace's"
    );

    let mut json = JsonSink::new(
        Vec::new(),
        JsonOptions {
            typed_printf: false,
        },
    );
    run(&mut json, steps, exit_maps);
    let json = String::from_utf8(json.into_inner().unwrap()).unwrap();
    let expected: Vec<&str> = expected_json.lines().filter(|l| !l.is_empty()).collect();
    let got: Vec<&str> = json.lines().collect();
    assert_eq!(
        got, expected,
        "JSON output of {name}.bt differs from bpftrace's"
    );
    for line in got {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            parsed.get("type").is_some() && parsed.get("data").is_some(),
            "{line}"
        );
    }
}

#[test]
fn hist_matches_bpftrace() {
    let h = hist(&[
        -5,
        -1,
        0,
        0,
        1,
        2,
        3,
        5,
        1000,
        1500,
        1_048_576,
        1_500_000_000,
    ]);
    let k = map(
        "@k",
        MapKind::Hist,
        vec![
            (vec![s("write"), i(2)], hist(&[7, 100, 100, 9])),
            (vec![s("read"), i(1)], hist(&[10, 12])),
        ],
    );
    check(
        "hist",
        &[],
        &[k, map("@h", MapKind::Hist, vec![(vec![], h)])],
    );
}

#[test]
fn lhist_matches_bpftrace() {
    let maps = [
        map(
            "@l",
            MapKind::LHist,
            vec![(vec![], lhist(0, 10, 2, &[-3, 0, 5, 5, 9, 10, 500]))],
        ),
        map(
            "@big",
            MapKind::LHist,
            vec![(vec![], lhist(0, 4096, 1024, &[1024, 3000, 5000]))],
        ),
        map(
            "@mid",
            MapKind::LHist,
            vec![
                (vec![i(2)], lhist(0, 100, 10, &[55, 56])),
                (vec![i(1)], lhist(0, 100, 10, &[4])),
            ],
        ),
    ];
    check("lhist", &[], &maps);
}

#[test]
fn stats_and_avg_match_bpftrace() {
    let maps = [
        map("@s", MapKind::Stats, vec![(vec![], stats(&[4, 10, -3]))]),
        map("@a", MapKind::Avg, vec![(vec![], avg(&[3, 4]))]),
        map(
            "@sk",
            MapKind::Stats,
            vec![
                (vec![s("x")], stats(&[100])),
                (vec![s("y")], stats(&[1, 2])),
            ],
        ),
        map(
            "@ak",
            MapKind::Avg,
            vec![
                (vec![i(1)], avg(&[-10])),
                (vec![i(2)], avg(&[7])),
                (vec![i(3)], avg(&[1])),
            ],
        ),
    ];
    check("stats", &[], &maps);
}

#[test]
fn count_sum_min_max_and_plain_maps_match_bpftrace() {
    let v = |x: Value| MapValue::Value(x);
    let maps = [
        map(
            "@c",
            MapKind::Count,
            vec![
                (vec![i(1), s("a")], MapValue::Count(2)),
                (vec![i(2), s("b")], MapValue::Count(1)),
                (vec![i(-1), s("z")], MapValue::Count(3)),
            ],
        ),
        map(
            "@sum",
            MapKind::Sum,
            vec![
                (vec![s("x")], MapValue::Sum(5)),
                (vec![s("y")], MapValue::Sum(-20)),
                (vec![s("z")], MapValue::Sum(100)),
            ],
        ),
        map(
            "@mn",
            MapKind::Min,
            vec![
                (vec![i(1)], MapValue::Min(5)),
                (vec![i(2)], MapValue::Min(-3)),
                (vec![i(3)], MapValue::Min(7)),
            ],
        ),
        map(
            "@mx",
            MapKind::Max,
            vec![
                (vec![i(10)], MapValue::Max(70)),
                (vec![i(20)], MapValue::Max(3)),
                (vec![i(30)], MapValue::Max(100)),
            ],
        ),
        map("@", MapKind::Count, vec![(vec![], MapValue::Count(1))]),
        map(
            "@str",
            MapKind::Value,
            vec![
                (vec![i(5)], v(s("five"))),
                (vec![i(1)], v(s("one"))),
                (vec![i(3)], v(s("three"))),
            ],
        ),
        map(
            "@int",
            MapKind::Value,
            vec![
                (vec![s("b")], v(i(20))),
                (vec![s("a")], v(i(30))),
                (vec![s("c")], v(i(-4))),
            ],
        ),
        map(
            "@tup",
            MapKind::Value,
            vec![(vec![], v(Value::Tuple(vec![i(1), s("two"), i(-3)])))],
        ),
    ];
    check("scalars", &[], &maps);
}

#[test]
fn printf_conversions_match_bpftrace() {
    let steps = vec![
        Step::Printf(
            "[%s] [%10s] [%-10s] [%.3s] [%-8.2s]\n",
            vec![s("hello"), s("hi"), s("hi"), s("abcdef"), s("xyz")],
        ),
        Step::Printf(
            "[%d] [%d] [%5d] [%-5d] [%05d] [%.4d] [%d]\n",
            vec![i(42), i(-7), i(42), i(42), i(42), i(42), i(-2_147_483_649)],
        ),
        Step::Printf(
            "[%u] [%u] [%lu] [%llu] [%ld] [%lld]\n",
            vec![
                i(42),
                i(-1),
                i(-1),
                Value::u64(u64::MAX),
                i(-1),
                i(-9_223_372_036_854_775_807),
            ],
        ),
        Step::Printf(
            "[%x] [%X] [%08x] [%lx] [%llx] [%x] [%lX]\n",
            vec![
                i(255),
                i(255),
                i(3054),
                i(1_311_768_467_463_790_320),
                i(-1),
                i(-1),
                i(3_735_928_559),
            ],
        ),
        Step::Printf(
            "[%o] [%lo] [%hhu] [%hu] [%hhd] [%hd] [%hhx]\n",
            vec![i(8), i(511), i(257), i(65537), i(255), i(65535), i(4095)],
        ),
        Step::Printf(
            "[%c] [%c%c] [%3c] [%-3c]\n",
            vec![i(65), i(104), i(105), i(66), i(67)],
        ),
        Step::Printf(
            "[%p] [%p] [%20p] [%-20p]\n",
            vec![i(4096), i(0), i(48879), i(48879)],
        ),
        Step::Printf("100%% done [%d%%]\n", vec![i(50)]),
        Step::Printf("plain %% no args\n", vec![]),
        Step::Printf("[%jd] [%zu] [%td] [%ju]\n", vec![i(-5), i(6), i(-7), i(8)]),
        Step::Printf("[%-20d|%20u]\n", vec![i(-123_456_789), i(123_456_789)]),
    ];
    check("printf", &steps, &[]);
}

#[test]
fn buffers_and_escapes_match_bpftrace() {
    let steps = vec![
        Step::Printf(
            "[%r] [%rx] [%rh]\n",
            vec![
                Value::Buf(b"ab\x01\xff".to_vec()),
                Value::Buf(b"ab".to_vec()),
                Value::Buf(b"ab\n".to_vec()),
            ],
        ),
        Step::Printf("json \"esc\" \\ \x01 \x1f end\n", vec![]),
    ];
    let maps = [
        map(
            "@b",
            MapKind::Count,
            vec![(vec![Value::Buf(b"k\x02".to_vec())], MapValue::Count(1))],
        ),
        map(
            "@v",
            MapKind::Value,
            vec![(vec![], MapValue::Value(Value::Buf(b"a\x03z".to_vec())))],
        ),
        map(
            "@q",
            MapKind::Value,
            vec![(vec![s("quote\"back\\slash")], MapValue::Value(i(1)))],
        ),
    ];
    check("buf", &steps, &maps);
}

#[test]
fn print_top_div_values_and_empty_maps_match_bpftrace() {
    let x = map(
        "@x",
        MapKind::Count,
        vec![
            (vec![i(3)], MapValue::Count(3)),
            (vec![i(1)], MapValue::Count(1)),
            (vec![i(2)], MapValue::Count(2)),
        ],
    );
    let h = map("@h", MapKind::Hist, vec![(vec![], hist(&[8, 8, 64]))]);
    let st = map("@s", MapKind::Stats, vec![(vec![], stats(&[10]))]);
    let av = map("@av", MapKind::Avg, vec![(vec![], avg(&[100]))]);
    let empty = map("@empty", MapKind::Value, vec![]);
    let all = MapPrintOptions::default();
    let steps = vec![
        Step::Print(x.clone(), all),
        Step::Print(x.clone(), MapPrintOptions { top: 2, div: 1 }),
        Step::Print(x.clone(), MapPrintOptions { top: 0, div: 2 }),
        Step::Print(h.clone(), all),
        Step::Print(h.clone(), MapPrintOptions { top: 0, div: 2 }),
        Step::Print(st.clone(), all),
        Step::Print(av.clone(), MapPrintOptions { top: 0, div: 10 }),
        Step::PrintValue(i(5)),
        Step::PrintValue(s("str")),
        Step::PrintValue(Value::Tuple(vec![i(1), s("a")])),
        Step::Printf("%s|\n", vec![s("tab\there")]),
    ];
    check("misc", &steps, &[x, h, st, av, empty]);
}

#[test]
fn symbols_widths_and_key_order_match_bpftrace() {
    let unresolved = |addr| MapValue::Value(Value::Sym(nexus_runtime::Symbol { addr, name: None }));
    let maps = [
        map(
            "@a",
            MapKind::Value,
            vec![(vec![i(2)], unresolved(0)), (vec![i(1)], unresolved(0))],
        ),
        map("@u", MapKind::Value, vec![(vec![i(3)], unresolved(0))]),
        map(
            "@c",
            MapKind::Value,
            vec![(
                vec![],
                MapValue::Value(Value::Signed { value: -3, bits: 8 }),
            )],
        ),
        map(
            "@d",
            MapKind::Value,
            vec![(
                vec![],
                MapValue::Value(Value::Unsigned {
                    value: 65535,
                    bits: 16,
                }),
            )],
        ),
        map(
            "@ui",
            MapKind::Value,
            vec![(
                vec![Value::Unsigned { value: 7, bits: 32 }],
                MapValue::Value(i(1)),
            )],
        ),
        // bpftrace orders integer keys as unsigned numbers: -5 sorts last.
        map(
            "@neg",
            MapKind::Value,
            vec![
                (vec![i(-5)], MapValue::Value(s("x"))),
                (vec![i(3)], MapValue::Value(s("y"))),
            ],
        ),
    ];
    check("syms", &[], &maps);
}
