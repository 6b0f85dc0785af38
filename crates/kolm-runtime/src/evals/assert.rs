//! Assertions: promptfoo's types, graded locally and deterministically.
//!
//! Every check here is a pure function of the output text and the counted run (the latency a
//! `latency` assertion sees is the deterministic estimate), so a suite's verdicts, and with
//! them the sealed accuracy, are the same on every machine. Types that need a model to judge
//! (`similar`, `llm-rubric`) are skipped with a reason until a teacher can grade them;
//! `javascript` runs in the recipe sandbox ([`crate::recipes::sandbox`]), with the limits of
//! [`JS_LIMITS`].

use serde_json::Value;

use super::Observed;

/// The assertion types we grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Equals,
    Contains,
    Icontains,
    ContainsAny,
    ContainsAll,
    IcontainsAny,
    IcontainsAll,
    StartsWith,
    Regex,
    IsJson,
    ContainsJson,
    Latency,
    Cost,
    Similar,
    LlmRubric,
    Javascript,
}

const KINDS: [(&str, Kind); 16] = [
    ("equals", Kind::Equals),
    ("contains", Kind::Contains),
    ("icontains", Kind::Icontains),
    ("contains-any", Kind::ContainsAny),
    ("contains-all", Kind::ContainsAll),
    ("icontains-any", Kind::IcontainsAny),
    ("icontains-all", Kind::IcontainsAll),
    ("starts-with", Kind::StartsWith),
    ("regex", Kind::Regex),
    ("is-json", Kind::IsJson),
    ("contains-json", Kind::ContainsJson),
    ("latency", Kind::Latency),
    ("cost", Kind::Cost),
    ("similar", Kind::Similar),
    ("llm-rubric", Kind::LlmRubric),
    ("javascript", Kind::Javascript),
];

impl Kind {
    /// Whether the verdict depends only on the output text (not on a run's latency or cost,
    /// nor on a model to grade it): the kinds a task's own assertions may use.
    pub fn checks_text(self) -> bool {
        !matches!(
            self,
            Kind::Latency | Kind::Cost | Kind::Similar | Kind::LlmRubric
        )
    }
}

/// One parsed, checked assertion.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub kind: Kind,
    /// `not-` prefix: the verdict is inverted.
    pub negate: bool,
    pub value: Option<Value>,
    pub threshold: Option<f64>,
    pub weight: f64,
    regex: Option<regex::Regex>,
}

/// What checking one assertion gave.
pub enum Outcome {
    Checked { pass: bool, score: f64, why: String },
    Skipped(String),
}

impl Assertion {
    /// Parses `{"type", "value", "threshold", "weight"}`, checking everything that can be
    /// checked before a run: the type, a regex's syntax, a schema's validity, required values.
    pub fn parse(v: &Value) -> Result<Assertion, String> {
        let obj = v.as_object().ok_or("an assertion must be an object")?;
        for key in obj.keys() {
            if ![
                "type",
                "value",
                "threshold",
                "weight",
                "metric",
                "transform",
            ]
            .contains(&key.as_str())
            {
                return Err(format!("unknown field `{key}`"));
            }
        }
        let ty = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or("missing `type`")?;
        let (negate, bare) = match ty.strip_prefix("not-") {
            Some(rest) => (true, rest),
            None => (false, ty),
        };
        let kind = KINDS
            .iter()
            .find(|(n, _)| *n == bare)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let names: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
                match names
                    .iter()
                    .map(|n| (strsim::jaro_winkler(n, bare), n))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                {
                    Some((s, n)) if s > 0.8 => {
                        format!("unknown assertion type `{ty}` (did you mean `{n}`?)")
                    }
                    _ => format!("unknown assertion type `{ty}`; known: {}", names.join(", ")),
                }
            })?;
        let value = obj.get("value").cloned().filter(|v| !v.is_null());
        let threshold = match obj.get("threshold") {
            None | Some(Value::Null) => None,
            Some(t) => Some(t.as_f64().ok_or("`threshold` must be a number")?),
        };
        let weight = match obj.get("weight") {
            None | Some(Value::Null) => 1.0,
            Some(w) => w
                .as_f64()
                .filter(|w| *w >= 0.0 && w.is_finite())
                .ok_or("`weight` must be a finite number ≥ 0")?,
        };
        let mut a = Assertion {
            kind,
            negate,
            value,
            threshold,
            weight,
            regex: None,
        };
        a.check_shape()?;
        Ok(a)
    }

    fn check_shape(&mut self) -> Result<(), String> {
        match self.kind {
            Kind::Equals => {
                self.value.as_ref().ok_or("`equals` needs a `value`")?;
            }
            Kind::Contains | Kind::Icontains | Kind::StartsWith => {
                self.text_value()?;
            }
            Kind::ContainsAny | Kind::ContainsAll | Kind::IcontainsAny | Kind::IcontainsAll => {
                self.list_value()?;
            }
            Kind::Regex => {
                let pattern = self.text_value()?;
                self.regex = Some(
                    regex::Regex::new(&pattern).map_err(|e| format!("bad `regex` value: {e}"))?,
                );
            }
            Kind::IsJson | Kind::ContainsJson => {
                if let Some(schema) = &self.value {
                    jsonschema::validator_for(schema)
                        .map_err(|e| format!("`value` is not a valid JSON schema: {e}"))?;
                }
            }
            Kind::Latency | Kind::Cost => {
                self.threshold.ok_or_else(|| {
                    format!(
                        "`{}` needs a `threshold`",
                        self.name().trim_start_matches("not-")
                    )
                })?;
            }
            Kind::Javascript => {
                self.text_value()?;
            }
            Kind::Similar | Kind::LlmRubric => {}
        }
        Ok(())
    }

    fn text_value(&self) -> Result<String, String> {
        match &self.value {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(format!("`{}` needs a string `value`", self.name())),
        }
    }

    /// A list of strings: a JSON array, or promptfoo's comma-separated string.
    fn list_value(&self) -> Result<Vec<String>, String> {
        match &self.value {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Ok(other.to_string()),
                })
                .collect(),
            Some(Value::String(s)) => Ok(s.split(',').map(|p| p.trim().to_string()).collect()),
            _ => Err(format!(
                "`{}` needs a `value` that is a list of strings",
                self.name()
            )),
        }
    }

    fn name(&self) -> String {
        let bare = KINDS
            .iter()
            .find(|(_, k)| *k == self.kind)
            .map(|(n, _)| *n)
            .unwrap_or("?");
        if self.negate {
            format!("not-{bare}")
        } else {
            bare.to_string()
        }
    }

    /// How the assertion is named in a report line.
    pub fn label(&self) -> String {
        self.name()
    }

    /// Grades the assertion against a run.
    pub fn check(&self, seen: &Observed) -> Outcome {
        self.check_in(seen, &serde_json::Map::new())
    }

    /// Grades the assertion against a run of a test with these `vars` (a `javascript`
    /// assertion sees them as `context.vars`).
    pub fn check_in(&self, seen: &Observed, vars: &serde_json::Map<String, Value>) -> Outcome {
        let out = seen.output;
        let mut score = None;
        let (pass, why) = match self.kind {
            Kind::Similar | Kind::LlmRubric => {
                return Outcome::Skipped(
                    "needs a teacher to grade it; model-graded assertions are not built yet".into(),
                )
            }
            Kind::Equals => {
                let want = self.value.as_ref().expect("checked at parse");
                let ok = json_equal(out, want);
                (ok, format!("expected {}, got {}", show(want), clip(out)))
            }
            Kind::Contains => {
                let v = self.text_value().unwrap_or_default();
                (
                    out.contains(&v),
                    format!("{} does not contain {v:?}", clip(out)),
                )
            }
            Kind::Icontains => {
                let v = self.text_value().unwrap_or_default();
                (
                    out.to_lowercase().contains(&v.to_lowercase()),
                    format!("{} does not contain {v:?} (any case)", clip(out)),
                )
            }
            Kind::StartsWith => {
                let v = self.text_value().unwrap_or_default();
                (
                    out.starts_with(&v),
                    format!("{} does not start with {v:?}", clip(out)),
                )
            }
            Kind::ContainsAny | Kind::IcontainsAny | Kind::ContainsAll | Kind::IcontainsAll => {
                let fold = matches!(self.kind, Kind::IcontainsAny | Kind::IcontainsAll);
                let hay = if fold {
                    out.to_lowercase()
                } else {
                    out.to_string()
                };
                let list = self.list_value().unwrap_or_default();
                let has = |s: &String| {
                    if fold {
                        hay.contains(&s.to_lowercase())
                    } else {
                        hay.contains(s.as_str())
                    }
                };
                if matches!(self.kind, Kind::ContainsAny | Kind::IcontainsAny) {
                    (
                        list.iter().any(has),
                        format!("{} contains none of {list:?}", clip(out)),
                    )
                } else {
                    let missing: Vec<&String> = list.iter().filter(|s| !has(s)).collect();
                    (
                        missing.is_empty(),
                        format!("{} lacks {missing:?}", clip(out)),
                    )
                }
            }
            Kind::Regex => {
                let re = self.regex.as_ref().expect("compiled at parse");
                (
                    re.is_match(out),
                    format!("{} does not match /{}/", clip(out), re.as_str()),
                )
            }
            Kind::IsJson => match serde_json::from_str::<Value>(out.trim()) {
                Err(e) => (false, format!("not JSON ({e}): {}", clip(out))),
                Ok(v) => self.schema_verdict(&v),
            },
            Kind::ContainsJson => match first_json(out) {
                None => (false, format!("no JSON value in {}", clip(out))),
                Some(v) => self.schema_verdict(&v),
            },
            Kind::Latency => {
                let t = self.threshold.unwrap_or(0.0);
                (
                    seen.latency_ms <= t,
                    format!("{:.1} ms is over {t} ms", seen.latency_ms),
                )
            }
            Kind::Cost => {
                let t = self.threshold.unwrap_or(0.0);
                (seen.cost <= t, format!("${} is over ${t}", seen.cost))
            }
            Kind::Javascript => {
                let (pass, s, why) = javascript(
                    &self.text_value().unwrap_or_default(),
                    out,
                    vars,
                    self.threshold,
                );
                score = s;
                (pass, why)
            }
        };
        let pass = pass != self.negate;
        let why = if self.negate {
            format!(
                "the opposite held: {}",
                self.name().trim_start_matches("not-")
            )
        } else {
            why
        };
        let score = match score {
            Some(s) if !self.negate => s,
            _ if pass => 1.0,
            _ => 0.0,
        };
        Outcome::Checked { pass, score, why }
    }

    fn schema_verdict(&self, v: &Value) -> (bool, String) {
        let Some(schema) = &self.value else {
            return (true, String::new());
        };
        match jsonschema::validator_for(schema) {
            Err(e) => (false, format!("schema does not compile: {e}")),
            Ok(validator) => match validator.iter_errors(v).next() {
                None => (true, String::new()),
                Some(err) => (
                    false,
                    format!(
                        "does not match the schema at `{}`: {err}",
                        err.instance_path()
                    ),
                ),
            },
        }
    }
}

/// Limits of a `javascript` assertion: a grader may do more than a recipe, but not without end.
pub const JS_LIMITS: crate::recipes::Limits = crate::recipes::Limits {
    time_ms: 1000,
    memory_mb: 64,
};

thread_local! {
    static SANDBOX: std::cell::OnceCell<Result<crate::recipes::Sandbox, crate::recipes::Fault>> =
        const { std::cell::OnceCell::new() };
}

/// promptfoo's `javascript` assertion: `value` is an expression, or a function body (when it
/// spans lines) that returns; `output` is the parsed JSON when the output is a JSON object or
/// array, else the text; `context.vars` is the test's vars. A boolean is the verdict; a number
/// is a score that passes at `threshold` (or above 0 without one); `{pass, score, reason}` is
/// taken as it says. Returns (pass, score, why).
fn javascript(
    value: &str,
    out: &str,
    vars: &serde_json::Map<String, Value>,
    threshold: Option<f64>,
) -> (bool, Option<f64>, String) {
    let body = if value.contains('\n') {
        value.to_string()
    } else {
        format!("return ({value});")
    };
    let source = format!("function __kolm_assert(output, context) {{\n{body}\n}}");
    let output = match serde_json::from_str::<Value>(out.trim()) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
        _ => Value::String(out.to_string()),
    };
    let context = serde_json::json!({ "vars": vars });
    let got =
        SANDBOX.with(
            |cell| match cell.get_or_init(|| crate::recipes::Sandbox::new(JS_LIMITS)) {
                Ok(sb) => sb.call(&source, "__kolm_assert", &[&output, &context], None),
                Err(e) => Err(e.clone()),
            },
        );
    let number = |s: f64| threshold.map_or(s > 0.0, |t| s >= t);
    match got {
        Err(f) => (false, None, format!("the assertion {f}")),
        Ok(Value::Bool(b)) => (b, None, "returned false".into()),
        Ok(Value::Number(n)) => {
            let s = n.as_f64().unwrap_or(0.0);
            (number(s), Some(s), format!("scored {s}, below the threshold"))
        }
        Ok(Value::Object(o)) if o.contains_key("pass") || o.contains_key("score") => {
            let s = o.get("score").and_then(Value::as_f64);
            let pass = match o.get("pass").and_then(Value::as_bool) {
                Some(p) => p,
                None => number(s.unwrap_or(0.0)),
            };
            let reason = o
                .get("reason")
                .and_then(Value::as_str)
                .map(crate::untrusted::shown)
                .unwrap_or_else(|| "returned pass: false".into());
            (pass, s, reason)
        }
        Ok(other) => (
            false,
            None,
            format!(
                "returned {}: a javascript assertion returns a boolean, a number or {{pass, score, reason}}",
                clip(&other.to_string())
            ),
        ),
    }
}

/// `equals`, JSON-aware: a non-string value is compared structurally with the parsed output
/// (numbers by value, so `1` equals `1.0`); a string value matches the text exactly, or
/// structurally when both sides are JSON.
fn json_equal(out: &str, want: &Value) -> bool {
    let canon = |v: &Value| crate::digest::canonical_json(v);
    match want {
        Value::String(s) => {
            out == s
                || match (
                    serde_json::from_str::<Value>(out.trim()),
                    serde_json::from_str::<Value>(s),
                ) {
                    (Ok(a), Ok(b)) => canon(&a) == canon(&b),
                    _ => false,
                }
        }
        other => serde_json::from_str::<Value>(out.trim())
            .map(|got| canon(&got) == canon(other))
            .unwrap_or(false),
    }
}

/// The first complete JSON object or array inside `text`.
fn first_json(text: &str) -> Option<Value> {
    text.char_indices()
        .filter(|(_, c)| *c == '{' || *c == '[')
        .find_map(|(i, _)| {
            serde_json::Deserializer::from_str(&text[i..])
                .into_iter::<Value>()
                .next()
                .and_then(|r| r.ok())
        })
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The output as quoted in a reason line, cut to a readable length.
fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdict(a: Value, out: &str) -> bool {
        let a = Assertion::parse(&a).unwrap();
        let seen = Observed {
            output: out,
            latency_ms: 50.0,
            cost: 0.0,
        };
        match a.check(&seen) {
            Outcome::Checked { pass, .. } => pass,
            Outcome::Skipped(_) => panic!("skipped"),
        }
    }

    #[test]
    fn equals_is_json_aware() {
        let out = r#"{"severity": "low", "label": "bug"}"#;
        assert!(verdict(
            json!({"type": "equals", "value": {"label": "bug", "severity": "low"}}),
            out
        ));
        assert!(!verdict(
            json!({"type": "equals", "value": {"label": "bug", "severity": "high"}}),
            out
        ));
        assert!(verdict(
            json!({"type": "equals", "value": "{\"label\":\"bug\",\"severity\":\"low\"}"}),
            out
        ));
        assert!(verdict(json!({"type": "equals", "value": 1}), "1.0"));
        assert!(verdict(json!({"type": "not-equals", "value": "x"}), "y"));
    }

    #[test]
    fn text_assertions() {
        assert!(verdict(
            json!({"type": "contains", "value": "bug"}),
            "a bug"
        ));
        assert!(verdict(
            json!({"type": "icontains", "value": "BUG"}),
            "a bug"
        ));
        assert!(verdict(
            json!({"type": "contains-any", "value": ["x", "bug"]}),
            "a bug"
        ));
        assert!(!verdict(
            json!({"type": "contains-all", "value": "x, bug"}),
            "a bug"
        ));
        assert!(verdict(
            json!({"type": "regex", "value": "^a b.g$"}),
            "a bug"
        ));
        assert!(verdict(
            json!({"type": "not-contains", "value": "zzz"}),
            "a bug"
        ));
        assert!(verdict(json!({"type": "latency", "threshold": 60}), ""));
        assert!(!verdict(json!({"type": "latency", "threshold": 10}), ""));
        assert!(verdict(json!({"type": "cost", "threshold": 0}), ""));
    }

    #[test]
    fn json_assertions() {
        let schema = json!({"type": "object", "required": ["label"]});
        assert!(verdict(json!({"type": "is-json"}), " [1, 2] "));
        assert!(!verdict(json!({"type": "is-json"}), "{\"label\":"));
        assert!(verdict(
            json!({"type": "is-json", "value": schema}),
            "{\"label\": 1}"
        ));
        assert!(!verdict(json!({"type": "is-json", "value": schema}), "{}"));
        assert!(verdict(
            json!({"type": "contains-json", "value": schema}),
            "sure: {\"label\": 1} ok"
        ));
        assert!(!verdict(json!({"type": "contains-json"}), "no json here"));
    }

    #[test]
    fn parse_errors_say_what() {
        let e = |v: Value| Assertion::parse(&v).unwrap_err();
        assert!(e(json!({"type": "equal", "value": 1})).contains("did you mean `equals`"));
        assert!(e(json!({"type": "regex", "value": "("})).contains("bad `regex`"));
        assert!(e(json!({"type": "latency"})).contains("needs a `threshold`"));
        assert!(e(json!({"type": "javascript"})).contains("needs a string `value`"));
        assert!(e(json!({"type": "is-json", "value": {"type": 12}}))
            .contains("not a valid JSON schema"));
        assert!(
            e(json!({"type": "equals", "value": 1, "vlaue": 2})).contains("unknown field `vlaue`")
        );
    }

    #[test]
    fn model_graded_types_are_skipped() {
        let a = Assertion::parse(&json!({"type": "llm-rubric", "value": "polite"})).unwrap();
        let seen = Observed {
            output: "x",
            latency_ms: 0.0,
            cost: 0.0,
        };
        assert!(matches!(a.check(&seen), Outcome::Skipped(_)));
    }

    #[test]
    fn javascript_assertions_run_in_the_sandbox() {
        let vars: serde_json::Map<String, Value> =
            serde_json::from_value(json!({"input": "charged twice", "want": "billing"})).unwrap();
        let run = |a: Value, out: &str| {
            let a = Assertion::parse(&a).unwrap();
            let seen = Observed {
                output: out,
                latency_ms: 0.0,
                cost: 0.0,
            };
            match a.check_in(&seen, &vars) {
                Outcome::Checked { pass, score, why } => (pass, score, why),
                Outcome::Skipped(w) => panic!("skipped: {w}"),
            }
        };
        let out = r#"{"label":"billing","severity":"high"}"#;
        // An expression; the JSON output arrives parsed; the test's vars are in context.
        let js = |v: &str| json!({"type": "javascript", "value": v});
        assert!(run(js("output.label === context.vars.want"), out).0);
        assert!(!run(js("output.label === 'bug'"), out).0);
        assert!(
            run(
                json!({"type": "not-javascript", "value": "output.label === 'bug'"}),
                out
            )
            .0
        );
        assert!(run(js("output.startsWith('plain')"), "plain text").0);
        // A body that returns; a number is a score against the threshold.
        let body = "const s = output.severity;\nreturn s === 'high' ? 0.75 : 0;";
        assert_eq!(run(js(body), out).1, 0.75);
        let t = |th: f64| json!({"type": "javascript", "value": body, "threshold": th});
        assert!(run(t(0.5), out).0);
        assert!(!run(t(0.9), out).0);
        // {pass, score, reason}.
        let (pass, _, why) = run(js("({pass: false, score: 0.2, reason: 'too vague'})"), out);
        assert!(!pass && why == "too vague");
        // A throw, a hang, a wrong return type: a failed assertion with the reason, never a
        // crash.
        let (pass, _, why) = run(js("(() => { throw new Error('boom'); })()"), out);
        assert!(!pass && why.contains("boom"), "{why}");
        let (pass, _, why) = run(js("(() => { for (;;) {} })()"), out);
        assert!(!pass && why.contains("time limit"), "{why}");
        let (pass, _, why) = run(js("'yes'"), out);
        assert!(!pass && why.contains("returns a boolean"), "{why}");
    }
}
