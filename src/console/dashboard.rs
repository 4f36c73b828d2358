//! The console's dashboard (`GET /console`): how the rules are used, over
//! all time, from the card log and the feedback on it: each family's
//! figures, the rules clinicians override most (of those with at least
//! [`MIN_CARDS`] cards, so that two overrides of two cards do not top the
//! list), and, when an audit report is loaded, its family rates with a
//! link to the full audit. Aggregates only, as in [`super::figures`].

use super::LoadedAudit;
use super::figures::{AuditLine, audit_source, audit_table, maybe_percent, percent};
use super::html::{esc, page as shell};
use crate::report::{Report, RuleFigures};
use crate::rules::RuleSet;
use crate::store::StoreError;
use std::cmp::Ordering;
use std::fmt::Write as _;

/// Cards a rule must have issued to be ranked by its override rate.
pub const MIN_CARDS: u64 = 5;

/// Rules ranked.
pub const TOP_RULES: usize = 10;

/// The dashboard over `report` (or why the store could not give it), the
/// loaded `rules` naming the ranked ones, and the loaded `audit`, if any.
pub fn page(
    rules: &RuleSet,
    report: &Result<Report, StoreError>,
    audit: Option<&LoadedAudit>,
) -> String {
    let mut body = String::with_capacity(16 * 1024);
    body.push_str(
        "<header>\n<h1>Dashboard</h1>\n<p>How the rules are used, over all time, \
         from the card log and the feedback on it.</p>\n</header>\n<main>\n",
    );
    match report {
        Ok(report) => {
            families(&mut body, report);
            most_overridden(&mut body, rules, report);
        }
        Err(why) => {
            let _ = writeln!(
                body,
                "<section class=\"panel\">\n<p class=\"unavailable\">Store figures unavailable: {}</p>\n</section>",
                esc(&why.to_string())
            );
        }
    }
    latest_audit(&mut body, audit);
    body.push_str("</main>\n");
    shell("Dashboard", &body)
}

/// Each family's figures.
fn families(out: &mut String, report: &Report) {
    out.push_str(
        "<section class=\"panel\" aria-labelledby=\"families\">\n<h2 id=\"families\">Families</h2>\n",
    );
    if report.families.is_empty() {
        out.push_str("<p>No cards issued yet.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"figures\">\n<thead><tr><th scope=\"col\">Family</th>\
         <th scope=\"col\" class=\"n\">Rules</th><th scope=\"col\" class=\"n\">Cards</th>\
         <th scope=\"col\" class=\"n\">Patients</th><th scope=\"col\" class=\"n\">Accepted</th>\
         <th scope=\"col\" class=\"n\">Overridden</th><th scope=\"col\" class=\"n\">Acceptance rate</th>\
         </tr></thead>\n<tbody>\n",
    );
    for family in &report.families {
        let c = &family.counts;
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&family.family),
            family.rules,
            c.cards,
            c.patients,
            c.accepted,
            c.overridden,
            maybe_percent(c.acceptance_rate)
        );
    }
    out.push_str(
        "</tbody>\n</table>\n<p class=\"hint\">Cards are rule cards: a combined card \
         counts once for each of its rules.</p>\n</section>\n",
    );
}

/// A rule's overridden cards over its cards (it has some: see [`ranked`]).
fn override_rate(rule: &RuleFigures) -> f64 {
    rule.counts.overridden as f64 / rule.counts.cards.max(1) as f64
}

/// The rules with at least [`MIN_CARDS`] cards, highest override rate
/// first (then most overrides, then by id, so the order is stable), at
/// most [`TOP_RULES`].
fn ranked(report: &Report) -> Vec<&RuleFigures> {
    let mut rules: Vec<&RuleFigures> = report
        .rules
        .iter()
        .filter(|r| r.counts.cards >= MIN_CARDS && r.counts.overridden > 0)
        .collect();
    rules.sort_by(|a, b| {
        override_rate(b)
            .partial_cmp(&override_rate(a))
            .unwrap_or(Ordering::Equal)
            .then(b.counts.overridden.cmp(&a.counts.overridden))
            .then(a.rule.cmp(&b.rule))
    });
    rules.truncate(TOP_RULES);
    rules
}

/// The most overridden rules, linked to their pages.
fn most_overridden(out: &mut String, rules: &RuleSet, report: &Report) {
    let _ = writeln!(
        out,
        "<section class=\"panel\" aria-labelledby=\"overridden\">\n\
         <h2 id=\"overridden\">Most overridden rules</h2>\n\
         <p class=\"hint\">The {TOP_RULES} highest override rates among rules with at least \
         {MIN_CARDS} cards.</p>"
    );
    let ranked = ranked(report);
    if ranked.is_empty() {
        let _ = writeln!(
            out,
            "<p>No rule with at least {MIN_CARDS} cards has been overridden.</p>\n</section>"
        );
        return;
    }
    out.push_str(
        "<table class=\"figures\">\n<thead><tr><th scope=\"col\">Rule</th>\
         <th scope=\"col\">Family</th><th scope=\"col\" class=\"n\">Cards</th>\
         <th scope=\"col\" class=\"n\">Overridden</th><th scope=\"col\" class=\"n\">Override rate</th>\
         <th scope=\"col\" class=\"n\">Acceptance rate</th></tr></thead>\n<tbody>\n",
    );
    for rule in ranked {
        let title = rules
            .rules
            .iter()
            .find(|r| r.id == rule.rule)
            .map(|r| format!("<br><span class=\"hint\">{}</span>", esc(&r.title)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"/console/rules/{id}\"><code>{id}</code></a>{title}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&rule.family),
            rule.counts.cards,
            rule.counts.overridden,
            percent(override_rate(rule)),
            maybe_percent(rule.counts.acceptance_rate),
            id = esc(&rule.rule),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// The loaded audit's family rates, or how to load one.
fn latest_audit(out: &mut String, audit: Option<&LoadedAudit>) {
    out.push_str(
        "<section class=\"panel\" aria-labelledby=\"latest-audit\">\n\
         <h2 id=\"latest-audit\">Latest audit</h2>\n",
    );
    match audit {
        None => out.push_str(
            "<p>No audit report is loaded. <a href=\"/console/audit\">The audit page</a> \
             says how to load one.</p>\n",
        ),
        Some(audit) => {
            audit_source(out, audit);
            let lines: Vec<AuditLine<'_>> = audit
                .report
                .families
                .iter()
                .map(AuditLine::of_family)
                .collect();
            audit_table(out, &lines);
        }
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Counts;

    fn rule(id: &str, cards: u64, overridden: u64) -> RuleFigures {
        RuleFigures {
            rule: id.into(),
            family: "f".into(),
            versions: vec!["1".into()],
            counts: Counts {
                cards,
                overridden,
                ..Counts::default()
            },
            comments: vec![],
        }
    }

    fn report(rules: Vec<RuleFigures>) -> Report {
        Report {
            since: None,
            until: None,
            rules,
            families: vec![],
            unknown_card_feedback: 0,
        }
    }

    fn bundled() -> RuleSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-rules");
        crate::rules::load_dir(&dir).expect("bundled rules load")
    }

    #[test]
    fn rules_rank_by_override_rate_above_the_minimum() {
        let mut rules = vec![
            rule("few", MIN_CARDS - 1, MIN_CARDS - 1),
            rule("half", 10, 5),
            rule("most", 5, 4),
            rule("half-of-more", 20, 10),
            rule("never", 50, 0),
        ];
        rules.extend((0..TOP_RULES).map(|i| rule(&format!("low-{i:02}"), 100, 1)));
        let report = report(rules);
        let ids: Vec<&str> = ranked(&report).iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(ids.len(), TOP_RULES);
        assert_eq!(
            ids[..5],
            ["most", "half-of-more", "half", "low-00", "low-01"]
        );
    }

    #[test]
    fn the_page_links_ranked_rules_and_shows_the_audit() {
        let audit = LoadedAudit {
            report: crate::audit::report::example(),
            origin: "audit <1>.json".into(),
        };
        let report = Ok(report(vec![rule("cw-psa-screening-70-plus", 8, 6)]));
        let html = page(&bundled(), &report, Some(&audit));
        assert!(html.contains(
            "<a href=\"/console/rules/cw-psa-screening-70-plus\"><code>cw-psa-screening-70-plus</code></a>"
        ));
        assert!(html.contains("<td class=\"n\">75.0%</td>"), "{html}");
        assert!(html.contains("at least 5 cards"));
        assert!(html.contains("audit &lt;1&gt;.json") && html.contains("href=\"/console/audit\""));
        assert!(
            html.contains("<td>deprescribing</td><td><code>deprescribing-patient-view</code></td>")
        );
        assert!(html.contains("No cards issued yet"), "no family figures");
        assert!(!html.contains("style="));

        let failed = Err(StoreError::Url("gone".into()));
        let html = page(&bundled(), &failed, None);
        assert!(html.contains("figures unavailable: invalid database URL: gone"));
        assert!(html.contains("No audit report is loaded"));
    }
}
