use std::collections::BTreeMap;

use super::*;

fn data(pairs: &[(&str, &str)]) -> Value {
    let m: BTreeMap<String, Vec<u8>> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Value::from_secret_data(&m)
}

fn run(src: &str, d: &Value) -> Result<String, TemplateError> {
    let t = Template::parse("t", src, &Options::default())?;
    let out = t.execute(d, &Limits::default())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn ok(src: &str) -> String {
    match run(src, &data(&[("a", "x"), ("b", ""), ("n", "3")])) {
        Ok(s) => s,
        Err(e) => panic!("{src}: {e}"),
    }
}

fn err(src: &str) -> TemplateError {
    match run(src, &data(&[("a", "x")])) {
        Ok(s) => panic!("{src}: expected an error, got {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn text_actions_and_trim() {
    assert_eq!(ok("hi {{ .a }}!"), "hi x!");
    assert_eq!(ok("a  {{- .a -}}  b"), "axb");
    assert_eq!(ok("a {{/* c */}} b"), "a  b");
    assert_eq!(ok("a {{- /* c */ -}} b"), "ab");
    assert_eq!(ok("{{3}}{{-3}}"), "3-3");
}

#[test]
fn literals() {
    assert_eq!(
        ok(r#"{{ "a\tb" }}|{{ `r\n` }}|{{ 'a' }}|{{ 0x10 }}|{{ 1.5 }}|{{ true }}|{{ 1e6 }}"#),
        "a\tb|r\\n|97|16|1.5|true|1e+06"
    );
}

#[test]
fn variables_and_scopes() {
    assert_eq!(
        ok("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"),
        "2"
    );
    assert_eq!(ok("{{ $x := .a }}{{ $x }}{{ $.a }}"), "xx");
    assert!(err("{{ $y }}").message.contains("undefined variable"));
}

#[test]
fn control_flow() {
    assert_eq!(ok("{{ if .b }}t{{ else if .a }}e{{ else }}f{{ end }}"), "e");
    assert_eq!(
        ok("{{ with .a }}[{{ . }}]{{ end }}{{ with .b }}no{{ else }}empty{{ end }}"),
        "[x]empty"
    );
    assert_eq!(
        ok("{{ range $i, $v := list 1 2 3 }}{{ $i }}={{ $v }};{{ end }}"),
        "0=1;1=2;2=3;"
    );
    assert_eq!(ok("{{ range $k, $v := . }}{{ $k }}{{ end }}"), "abn");
    assert_eq!(ok("{{ range list }}x{{ else }}none{{ end }}"), "none");
    assert_eq!(
        ok(
            "{{ range until 10 }}{{ if eq . 3 }}{{ break }}{{ end }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}"
        ),
        "02"
    );
    assert_eq!(ok("{{ range 3 }}{{ . }}{{ end }}"), "012");
}

#[test]
fn define_template_block() {
    assert_eq!(
        ok(r#"{{ define "x" }}<{{ . }}>{{ end }}{{ template "x" .a }}"#),
        "<x>"
    );
    assert_eq!(ok(r#"{{ block "y" .a }}[{{ . }}]{{ end }}"#), "[x]");
    let mut t = Template::parse("main", r#"{{ template "part" . }}"#, &Options::default()).unwrap();
    t.add("part", "{{ .a }}!").unwrap();
    assert_eq!(
        t.execute(&data(&[("a", "q")]), &Limits::default()).unwrap(),
        b"q!"
    );
}

#[test]
fn missing_key_is_an_error_but_index_is_not() {
    let e = err("{{ .nope }}");
    assert_eq!(e.kind, ErrorKind::Exec);
    assert!(
        e.message.contains("map has no entry for key \"nope\""),
        "{}",
        e.message
    );
    assert_eq!(ok(r#"[{{ index . "nope" }}]"#), "[]");
    assert_eq!(
        ok(r#"{{ $m := dict "k" 1 }}[{{ index $m "nope" }}]"#),
        "[<no value>]"
    );
}

#[test]
fn builtins() {
    assert_eq!(
        ok(
            r#"{{ printf "%s-%d-%q-%x-%5.2f|%-3s|%03d|%v|%t|%%" "a" 42 "q" "hi" 3.14159 "z" 7 (list 1 "b") true }}"#
        ),
        "a-42-\"q\"-6869- 3.14|z  |007|[1 b]|true|%"
    );
    assert_eq!(
        ok(r#"{{ print 1 2 "a" "b" 3 }}|{{ println "x" 1 }}"#),
        "1 2ab3|x 1\n"
    );
    assert_eq!(
        ok(r#"{{ and 1 0 2 }}{{ or 0 "" "z" }}{{ not 0 }}{{ len "abc" }}{{ index (list 1 2) 1 }}"#),
        "0ztrue32"
    );
    assert_eq!(
        ok(r#"{{ eq 1 2 3 1 }}{{ ne "a" "b" }}{{ lt 1 2 }}{{ ge 2.5 2.5 }}"#),
        "truetruetruetrue"
    );
    assert!(err("{{ eq 1 1.0 }}").message.contains("incompatible types"));
    assert_eq!(
        ok(r#"{{ html "<a&'>" }}|{{ js "a'b<" }}|{{ urlquery "a b&c" }}"#),
        "&lt;a&amp;&#39;&gt;|a\\'b\\u003C|a+b%26c"
    );
    // and/or stop early: the failing call is never made.
    assert_eq!(ok(r#"{{ or 1 (fail "no") }}"#), "1");
}

#[test]
fn binary_values_round_trip() {
    let m = BTreeMap::from([("bin".to_string(), vec![0u8, 0xff, 0xfe, b'\n'])]);
    let t = Template::parse(
        "t",
        "{{ .bin }}|{{ .bin | b64enc | b64dec }}",
        &Options::default(),
    )
    .unwrap();
    let out = t
        .execute(&Value::from_secret_data(&m), &Limits::default())
        .unwrap();
    assert_eq!(out, [0u8, 0xff, 0xfe, b'\n', b'|', 0, 0xff, 0xfe, b'\n']);
}

#[test]
fn delimiters() {
    let o = Options {
        left: "<<".into(),
        right: ">>".into(),
        ..Options::default()
    };
    let t = Template::parse("t", "<< .a >> {{ .a }}", &o).unwrap();
    assert_eq!(
        t.execute(&data(&[("a", "v")]), &Limits::default()).unwrap(),
        b"v {{ .a }}"
    );
}

#[test]
fn unsupported_and_unknown_functions_fail_at_parse() {
    let e = Template::parse("t", "{{ env \"HOME\" }}", &Options::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Parse);
    assert!(
        e.message.contains("function \"env\" not defined"),
        "{}",
        e.message
    );
    let e = Template::parse("t", "{{ getHostByName \"x\" }}", &Options::default()).unwrap_err();
    assert!(e.message.contains("not defined"));
    let e = Template::parse("t", "{{ semver \"1.0.0\" }}", &Options::default()).unwrap_err();
    assert!(
        e.message.contains("function \"semver\" is not supported"),
        "{}",
        e.message
    );
    for n in ["env", "expandenv", "getHostByName"] {
        assert!(!FuncTable::eso().contains(n));
    }
}

#[test]
fn registered_functions_are_callable() {
    let mut o = Options::default();
    o.funcs.insert("shout", |_, a| {
        Ok(Value::str([funcs::s(a, 0)?, b"!"].concat()))
    });
    let t = Template::parse("t", "{{ .a | shout }}", &o).unwrap();
    assert_eq!(
        t.execute(&data(&[("a", "hi")]), &Limits::default())
            .unwrap(),
        b"hi!"
    );
}

#[test]
fn sprig_strings() {
    assert_eq!(
        ok(
            r#"{{ "  x " | trim }}|{{ trimAll "$" "$a$" }}|{{ "Hello" | upper }}|{{ title "hello world" }}|{{ substr 1 3 "abcd" }}|{{ repeat 3 "ab" }}"#
        ),
        "x|a|HELLO|Hello World|bc|ababab"
    );
    assert_eq!(
        ok(
            r#"{{ "a\nb" | indent 2 }}|{{ "a" | nindent 2 }}|{{ quote "a" 1 }}|{{ squote "b" }}|{{ cat "a" 1 nil "c" }}"#
        ),
        "  a\n  b|\n  a|\"a\" \"1\"|'b'|a 1 c"
    );
    assert_eq!(
        ok(
            r#"{{ splitList "," "a,b" | join "-" }}|{{ (split "," "a,b")._1 }}|{{ snakecase "FooBar" }}|{{ camelcase "foo_bar" }}|{{ kebabcase "FooBar" }}"#
        ),
        "a-b|b|foo_bar|FooBar|foo-bar"
    );
    assert_eq!(
        ok(
            r#"{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}|{{ regexFind "[0-9]+" "ab12c" }}|{{ regexMatch "^a" "abc" }}|{{ trunc 2 "abc" }}|{{ abbrev 5 "hello world" }}"#
        ),
        "-W-xxW-|12|true|ab|he..."
    );
}

#[test]
fn sprig_encoding_and_hashes() {
    assert_eq!(
        ok(r#"{{ "hi" | sha256sum }}"#),
        "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
    );
    assert_eq!(
        ok(
            r#"{{ "hi" | sha1sum }}|{{ "hi" | adler32sum }}|{{ "hi" | b32enc }}|{{ "NBUQ====" | b32dec }}"#
        ),
        "c22b5f9178342609428d6f51b2c5af4c0bde6a42|20644050|NBUQ====|hi"
    );
    assert_eq!(
        ok(r#"{{ dict "b" 1 "a" (list "<x>" 2.5) | toJson }}|{{ dict "a" "<" | toRawJson }}"#),
        r#"{"a":["\u003cx\u003e",2.5],"b":1}|{"a":"<"}"#
    );
    assert_eq!(
        ok(
            r#"{{ (fromJson "{\"n\": 8080, \"m\": 1000000}").n }} {{ (fromJson "{\"n\": 8080, \"m\": 1000000}").m }}"#
        ),
        "8080 1e+06"
    );
    assert_eq!(ok(r#"{{ dict "a" 1 | toPrettyJson }}"#), "{\n  \"a\": 1\n}");
    assert_eq!(
        ok(r#"{{ dict "a" (list 1 2) "b" (dict "c" "x y") | toYaml }}"#),
        "a:\n- 1\n- 2\nb:\n  c: x y"
    );
    assert_eq!(ok(r#"{{ (fromYaml "a: {b: 1}").a.b }}"#), "1");
}

#[test]
fn sprig_lists_dicts_math() {
    assert_eq!(
        ok(
            r#"{{ list 1 2 3 | rest | first }}{{ last (list 1 2) }}{{ list 1 1 2 | uniq | len }}{{ has 2 (list 1 2) }}"#
        ),
        "222true"
    );
    assert_eq!(
        ok(
            r#"{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ hasKey $d "a" }}{{ keys (dict "y" 1 "x" 2) | sortAlpha }}{{ dig "a" "b" "def" (dict "a" (dict "b" "v")) }}"#
        ),
        "true[x y]v"
    );
    assert_eq!(
        ok(
            r#"{{ add 1 2 "3" }}|{{ sub 5 2 }}|{{ mul 2 3 }}|{{ div 7 2 }}|{{ mod 7 2 }}|{{ max 1 5 3 }}|{{ addf 1.5 2 }}|{{ round 2.555 2 }}|{{ atoi "42" }}|{{ int "0x10" }}"#
        ),
        "6|3|6|3|1|5|3.5|2.56|42|16"
    );
    assert_eq!(
        ok(
            r#"{{ default "d" .b }}{{ default "d" .a }}{{ empty .b }}{{ coalesce "" 0 "c" }}{{ ternary "y" "n" true }}"#
        ),
        "dxtruecy"
    );
    assert_eq!(
        ok(r#"{{ seq 3 }}|{{ until 3 }}|{{ untilStep 0 10 4 }}"#),
        "1 2 3|[0 1 2]|[0 4 8]"
    );
}

#[test]
fn htpasswd_and_bcrypt() {
    assert_eq!(
        ok(r#"{{ htpasswd "foo1" "FZ4jR;l]ON;pHKi=_'zh79P" "sha" }}"#),
        "foo1:{SHA}wtdJD6OIjUniEJkTlewnKzfFxA4="
    );
    let h = ok(r#"{{ bcrypt "pw" }}"#);
    assert!(bcrypt::verify("pw", &h).unwrap());
}

#[test]
fn dates_use_the_given_clock() {
    let l = Limits {
        now: Some(Time {
            unix_nanos: 1_700_000_000_123_000_000,
        }),
        ..Limits::default()
    };
    let t = Template::parse(
        "t",
        r#"{{ now | date "2006-01-02T15:04:05.000Z07:00 Mon Jan" }}|{{ now | unixEpoch }}"#,
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        t.execute(&Value::Nil, &l).unwrap(),
        b"2023-11-14T22:13:20.123Z Tue Nov|1700000000"
    );
}

#[test]
fn fail_hides_computed_messages() {
    let e = err(r#"{{ fail "literal reason" }}"#);
    assert!(e.message.contains("literal reason"));
    let e = err(r#"{{ fail .a }}"#);
    assert!(
        !e.message.contains('x') || !e.message.contains(": x"),
        "{}",
        e.message
    );
    assert!(e.message.contains("withheld"));
}

#[test]
fn limits_stop_hostile_templates() {
    let big = Limits {
        max_output_bytes: 100,
        ..Limits::default()
    };
    let t = Template::parse(
        "t",
        "{{ range until 1000 }}xxxxxxxxxx{{ end }}",
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        t.execute(&Value::Nil, &big).unwrap_err().kind,
        ErrorKind::Limit
    );
    let e = run("{{ range until 1000000000 }}{{ end }}", &Value::Nil).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit, "{}", e.message);
    let e = run(r#"{{ repeat 1000000000 "ab" }}"#, &Value::Nil).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit);
    let e = run(
        r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}"#,
        &Value::Nil,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit);
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(run(&format!("{{{{ {deep} }}}}"), &Value::Nil).is_err());
    let e = run(r#"{{ $x := list }}{{ range until 100000 }}{{ $x = append $x (repeat 100000 "a") }}{{ end }}"#, &Value::Nil).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit);
    let o = Options {
        max_source_bytes: 10,
        ..Options::default()
    };
    assert_eq!(
        Template::parse("t", "{{ 12345678901 }}", &o)
            .unwrap_err()
            .kind,
        ErrorKind::Limit
    );
}

#[test]
fn errors_carry_position_not_values() {
    let e = run(
        "line1\n{{ .a | upper | b64dec | atoi | upper }}",
        &data(&[("a", "s3cr3t")]),
    )
    .unwrap_err();
    assert!(e.message.starts_with("template: t:2:"), "{}", e.message);
    assert!(!e.message.contains("s3cr3t"));
    let e = Template::parse("t", "{{ #xx }}", &Options::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Parse);
}

mod props {
    use proptest::prelude::*;

    use super::super::*;

    const PIECES: &[&str] = &[
        "{{", "}}", "{{-", "-}}", " ", ".a", "$x", ":=", "=", "|", "(", ")", "if", "else", "end",
        "range", "with", "define", "template", "block", "\"s\"", "`r`", "1", "-2", "3.5", "'c'",
        "nil", "true", "until", "repeat", "list", "dict", "printf", "\"%d%s\"", "index", "len",
        "toJson", "fromJson", "b64dec", "indent", "break", "continue", "/*", "*/", ",", "$", ".",
        "x", "\n", "1000000",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_templates_never_panic_and_respect_the_output_cap(picks in prop::collection::vec(0..PIECES.len(), 0..40)) {
            let src: String = picks.iter().map(|i| PIECES[*i]).collect();
            let limits = Limits { max_output_bytes: 256, max_steps: 20_000, ..Limits::default() };
            if let Ok(t) = Template::parse("p", &src, &Options::default()) {
                let data = super::data(&[("a", "v")]);
                if let Ok(out) = t.execute(&data, &limits) {
                    prop_assert!(out.len() <= 256);
                }
            }
        }
    }
}
