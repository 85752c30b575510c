//! `--json FILE`: the whole run as one JSON document.

use serde::Serialize;

use super::{CaseResult, Summary};

#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub manifest: &'a str,
    /// "I/N" when the run was one shard of the matrix.
    pub shard: Option<String>,
    pub filter: Option<&'a str>,
    pub summary: &'a Summary,
    pub cases: &'a [CaseResult],
}

pub fn render(report: &JsonReport) -> String {
    serde_json::to_string_pretty(report).expect("results serialize") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_holds_statuses_splats_ktap_and_retries() {
        let results = super::super::sample::results();
        let summary = Summary::of(&results);
        let text = render(&JsonReport {
            manifest: "m.toml",
            shard: Some("1/2".into()),
            filter: None,
            summary: &summary,
            cases: &results,
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["shard"], "1/2");
        assert_eq!(v["summary"]["exit_code"], 6);
        let cases = v["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 8);
        let status: Vec<&str> = cases
            .iter()
            .map(|c| c["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            status,
            ["PASS", "FAIL", "FAIL", "SPLAT", "CRASH", "TIMEOUT", "PASS", "INFRA"]
        );
        let splat = &cases[3]["splats"][0];
        assert_eq!(splat["kind"], "warning");
        assert_eq!(splat["title"], "WARNING in attach");
        assert_eq!(splat["fingerprint"], "warning|attach");
        let tests = &cases[2]["ktap"][0]["tests"];
        assert_eq!(tests[1]["outcome"], "fail");
        assert_eq!(tests[2]["outcome"], "skip");
        assert_eq!(tests[2]["reason"], "no device");
        assert_eq!(cases[6]["attempts"][0]["status"], "CRASH");
        assert_eq!(cases[4]["exit_code"], serde_json::Value::Null);
        assert!(cases[0].get("console_tail").is_none());
    }
}
