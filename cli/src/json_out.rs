//! The `--json` contract (book/src/cli.md, "JSON output"): a command run
//! with `--json` prints exactly one JSON document on stdout, whether it
//! succeeds or fails. A failure's document has an `error` object (`code`,
//! `message`, `severity`, `span`, `help`, `labels`, `related`); a command
//! whose failure still has a report (verify, plan) puts `error` next to the
//! report's fields. The schemas are in book/src/json-schema/.

use miette::Diagnostic;
use serde_json::{Map, Value, json};
use v6build_driver::Outcome;

/// The `error` object of a diagnostic: its code, message, help, where it
/// points (file, 1-based line and column, byte offset and length) and the
/// diagnostics related to it.
pub fn diagnostic(d: &dyn Diagnostic, fallback_code: &str) -> Value {
    let labels: Vec<miette::LabeledSpan> = d.labels().map(|l| l.collect()).unwrap_or_default();
    let primary = labels
        .iter()
        .find(|l| l.primary())
        .or_else(|| labels.first());
    let at = primary.map_or(Value::Null, |l| span(d, l));
    let severity = match d.severity() {
        Some(miette::Severity::Warning) => "warning",
        Some(miette::Severity::Advice) => "advice",
        _ => "error",
    };
    let code = d
        .code()
        .map(|c| c.to_string())
        .filter(|c| valid_code(c))
        .unwrap_or_else(|| fallback_code.to_string());
    json!({
        "code": code,
        "message": d.to_string(),
        "severity": severity,
        "span": at,
        "help": d.help().map(|h| h.to_string()),
        "labels": labels.iter().map(|l| json!({
            "label": l.label(),
            "span": span(d, l),
        })).collect::<Vec<_>>(),
        "related": d.related().map(|r| r.map(|x| diagnostic(x, fallback_code)).collect::<Vec<_>>())
            .unwrap_or_default(),
    })
}

/// Where a label points, or `null` when the diagnostic has no source text.
fn span(d: &dyn Diagnostic, l: &miette::LabeledSpan) -> Value {
    let Some(src) = d.source_code() else {
        return Value::Null;
    };
    let Ok(c) = src.read_span(l.inner(), 0, 0) else {
        return Value::Null;
    };
    json!({
        "file": c.name(),
        "line": c.line() + 1,
        "column": c.column() + 1,
        "offset": l.offset(),
        "length": l.len(),
    })
}

/// An `error` object with no place in a file.
pub fn plain(code: &str, message: &str) -> Value {
    json!({
        "code": code,
        "message": message,
        "severity": "error",
        "span": null,
        "help": null,
        "labels": [],
        "related": [],
    })
}

/// Whether `code` is a stable identifier: lowercase words joined by `-`
/// or `_`, in `::`-separated parts (`media::not-pinned`).
pub fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.split("::").all(|part| {
            !part.is_empty()
                && part.split(['-', '_']).all(|w| {
                    !w.is_empty()
                        && w.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        })
}

/// The `error` object of a failed outcome (`None` for success, and for
/// `diff`'s "the sides differ", which its report already says).
/// `command` names the command, for codes of failures without a
/// diagnostic of their own (`build::failed`, `release-ls::failed`).
pub fn outcome_error(command: &str, outcome: &Outcome) -> Option<Value> {
    let failed = format!("{}::failed", command.replace(' ', "-"));
    Some(match outcome {
        Outcome::Success | Outcome::Differs => return None,
        Outcome::Failure(msg) => plain(&failed, msg),
        Outcome::FailureReport(r) => diagnostic(r.as_ref(), &failed),
        Outcome::BadRecipe(r) => diagnostic(r.as_ref(), "recipe::invalid"),
        Outcome::Usage(msg) => plain("usage", msg),
        Outcome::InputsChanged(msg) => plain("verify::inputs-changed", msg),
        // A typed failure: its kind names it (`build::corrupt`, `ls::io`).
        Outcome::Error(e) => plain(
            &format!("{}::{}", command.replace(' ', "-"), e.kind().code()),
            &e.to_string(),
        ),
    })
}

/// The one document a `--json` run prints: the command's report (if it
/// got that far), with the outcome's `error` added when it failed.
pub fn document(command: &str, report: Option<Value>, outcome: &Outcome) -> Option<Value> {
    let error = outcome_error(command, outcome);
    match (report, error) {
        (r, None) => r,
        (Some(Value::Object(mut m)), Some(mut e)) => {
            // verify's verdict names the failure better than `verify::failed`.
            if let Some(v) = m.get("verdict").and_then(Value::as_str)
                && e["code"] == "verify::failed"
            {
                e["code"] = format!("verify::{}", v.replace('_', "-")).into();
            }
            m.insert("error".into(), e);
            Some(Value::Object(m))
        }
        (_, Some(e)) => {
            let mut m = Map::new();
            m.insert("error".into(), e);
            Some(Value::Object(m))
        }
    }
}

/// Prints `doc` on stdout (pretty, one document).
pub fn print(doc: &Value) {
    outln!("{}", serde_json::to_string_pretty(doc).unwrap_or_default());
}

/// An enum word for JSON: lowercase, spaces as `-` (`to build` →
/// `to-build`).
pub fn word(w: &str) -> String {
    w.to_ascii_lowercase().replace(' ', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for ok in [
            "usage",
            "media::not-pinned",
            "build::failed",
            "release-ls::failed",
        ] {
            assert!(valid_code(ok), "{ok}");
        }
        for bad in ["", "Media::x", "a::", "a b", "a--b", "::a"] {
            assert!(!valid_code(bad), "{bad}");
        }
    }

    #[test]
    fn failure_without_report_is_an_error_object() {
        let d = document("gc", None, &Outcome::Failure("no".into())).unwrap();
        assert_eq!(d["error"]["code"], "gc::failed");
        assert_eq!(d["error"]["message"], "no");
        assert!(d["error"]["span"].is_null());
        assert_eq!(document("gc", None, &Outcome::Success), None);
    }
}
