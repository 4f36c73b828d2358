//! The audit page (`/console/audit`): the audit report the console shows
//! (loaded at startup with `hookwise serve --audit FILE`, or uploaded
//! here), its family totals, the full report page at
//! `/console/audit/report`, and the upload form. An upload replaces the
//! report in memory only; a report holds aggregates, never patient ids.

use super::LoadedAudit;
use super::html::{esc, page as shell};
use crate::audit::AuditReport;
use crate::audit::render::{interval_text, measure_label, rate_text, thousands};
use std::fmt::Write as _;

/// The largest upload read: a report of every rule is a few hundred KB.
pub const MAX_UPLOAD_BYTES: usize = 8 * 1024 * 1024;

/// The audit page: the loaded report, if any, and the upload form, with
/// `problem` (why the last upload was refused) above it.
pub fn page(loaded: Option<&LoadedAudit>, problem: Option<&str>) -> String {
    let mut body = String::with_capacity(16 * 1024);
    body.push_str("<header>\n<h1>Audit</h1>\n</header>\n<main>\n");
    match loaded {
        Some(loaded) => summary(&mut body, loaded),
        None => body.push_str(
            "<p>No audit report is loaded. Measure the rules over a population with \
             <code>hookwise audit … --format json --output audit.json</code>, then start the \
             server with <code>--audit audit.json</code> or upload the file below.</p>\n",
        ),
    }
    upload_form(&mut body, problem);
    body.push_str("</main>\n");
    shell("Audit", &body)
}

/// What was measured and the family totals.
fn summary(out: &mut String, loaded: &LoadedAudit) {
    let report = &loaded.report;
    let _ = write!(
        out,
        "<dl class=\"facts\">\n<dt>Report</dt><dd>{}</dd>\n<dt>As of</dt><dd>{}</dd>\n\
         <dt>Patients</dt><dd>{} read, {} alive at the as-of time</dd>\n",
        esc(&loaded.origin),
        esc(&report.as_of),
        thousands(report.patients),
        thousands(report.patients_at_as_of)
    );
    if let Some(window) = &report.window {
        let _ = writeln!(
            out,
            "<dt>Orders replayed</dt><dd>{} to {}</dd>",
            esc(&window.since),
            esc(&window.until)
        );
    }
    if let Some(before) = &report.before {
        let _ = writeln!(
            out,
            "<dt>Compared with</dt><dd>{} to {}</dd>",
            esc(&before.window.since),
            esc(&before.window.until)
        );
    }
    out.push_str(
        "</dl>\n<p><a href=\"/console/audit/report\">Open the full report</a> \
                  (charts, every rule, the alert burden).</p>\n",
    );
    family_table(out, report);
}

/// One row per family and measure: eligible, flagged and the rate.
fn family_table(out: &mut String, report: &AuditReport) {
    out.push_str(
        "<table class=\"cases\">\n<caption>Low-value care found, by family</caption>\n\
         <thead><tr><th scope=\"col\">Family</th><th scope=\"col\">Measure</th>\
         <th scope=\"col\">Eligible</th><th scope=\"col\">Flagged</th>\
         <th scope=\"col\">Rate</th><th scope=\"col\">95% interval</th></tr></thead>\n<tbody>\n",
    );
    for row in &report.families {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&row.family),
            measure_label(row.measure),
            thousands(row.figures.eligible),
            thousands(row.figures.flagged),
            rate_text(&row.figures),
            interval_text(&row.figures, "–")
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The upload form, with the refusal of the last upload when there was one.
fn upload_form(out: &mut String, problem: Option<&str>) {
    out.push_str("<h2>Upload a report</h2>\n");
    if let Some(problem) = problem {
        let _ = writeln!(
            out,
            "<p class=\"problem\" role=\"alert\">{}</p>",
            esc(problem)
        );
    }
    out.push_str(
        "<form method=\"post\" action=\"/console/audit\" enctype=\"multipart/form-data\">\n\
         <p class=\"field\"><label for=\"report\">Audit report (JSON from \
         <code>hookwise audit --format json</code>)</label>\n\
         <input id=\"report\" name=\"report\" type=\"file\" accept=\".json,application/json\" required></p>\n\
         <p><button type=\"submit\">Show this report</button></p>\n</form>\n",
    );
}

/// Reads an uploaded report, or says what is wrong with it.
pub fn read_upload(bytes: &[u8]) -> Result<AuditReport, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("The file is empty.".into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "The file is not UTF-8 text.".to_string())?;
    AuditReport::from_json(text)
        .map_err(|e| format!("This is not an audit report (hookwise audit --format json): {e}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_report_shows_its_families_and_an_upload_its_problem() {
        let loaded = LoadedAudit {
            report: crate::audit::report::example(),
            origin: "<audit>.json".into(),
        };
        let html = page(Some(&loaded), Some("bad <file>"));
        assert!(html.contains("&lt;audit&gt;.json"), "{html}");
        assert!(html.contains("bad &lt;file&gt;"));
        for row in &loaded.report.families {
            assert!(html.contains(&esc(&row.family)), "{}", row.family);
        }
        let empty = page(None, None);
        assert!(empty.contains("No audit report is loaded") && !empty.contains("role=\"alert\""));
    }

    #[test]
    fn an_upload_that_is_not_a_report_says_why() {
        assert_eq!(read_upload(b" \n").unwrap_err(), "The file is empty.");
        let not_json = read_upload(b"{\"asOf\": ").unwrap_err();
        assert!(not_json.contains("line 1"), "{not_json}");
        let other = read_upload(b"{\"resourceType\": \"Bundle\"}").unwrap_err();
        assert!(other.contains("not an audit report"), "{other}");
        let example = serde_json::to_vec(&crate::audit::report::example()).unwrap();
        assert_eq!(
            read_upload(&example).unwrap(),
            crate::audit::report::example()
        );
    }
}
