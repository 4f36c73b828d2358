//! A rule's page (`GET /console/rules/{id}`): what the catalogue shows of
//! it, and in full its further sources, the card it produces (summary and
//! detail as written, with their `{{…}}` placeholders, links, suggestions
//! and override reasons) and the test cases that name it, with what each
//! expects; and near the top its live figures and audit rows
//! ([`super::figures`]).

use super::catalogue::{citation, facts, logic, value_sets};
use super::figures::{self, PageFigures};
use super::html::{esc, page as shell};
use crate::engine::cases::Expectation;
use crate::rules::model::{CardTemplate, Rule};
use crate::rules::{Family, RuleSet};
use std::fmt::Write as _;

/// The rule's test cases, or why they could not be read.
pub type Cases<'a> = Result<Vec<Expectation>, &'a str>;

/// The page of `rule` (of `family`), with its test `cases` and its
/// `live` figures.
pub fn page(
    rules: &RuleSet,
    family: &Family,
    rule: &Rule,
    cases: Cases<'_>,
    live: PageFigures<'_>,
) -> String {
    let mut body = String::with_capacity(64 * 1024);
    let _ = write!(
        body,
        "<header>\n<p><a href=\"/console/rules\">All rules</a></p>\n\
         <h1>{}</h1>\n<p><code class=\"id\">{}</code> version {}</p>\n</header>\n<main>\n\
         <article class=\"rule\">\n{}",
        esc(&rule.title),
        esc(&rule.id),
        esc(&rule.version),
        facts(family, rule)
    );
    if !rule.also_cites.is_empty() {
        body.push_str("<h3>Also cites</h3>\n<ul class=\"citations\">\n");
        for c in &rule.also_cites {
            let _ = writeln!(body, "<li>{}</li>", citation(c));
        }
        body.push_str("</ul>\n");
    }
    figures::write(&mut body, &rule.id, live);
    logic(&mut body, rules, rule);
    card(&mut body, &rule.card);
    value_sets(&mut body, rules, rule);
    test_cases(&mut body, cases);
    body.push_str("</article>\n</main>\n");
    shell(&rule.title, &body)
}

/// The card as the rule file writes it.
fn card(out: &mut String, card: &CardTemplate) {
    let indicator = serde_json::to_value(card.indicator)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<h3>Card</h3>\n<dl class=\"facts card\">\n\
         <dt>Indicator</dt><dd>{}</dd>\n<dt>Summary</dt><dd>{}</dd>\n\
         <dt>Source</dt><dd>{}</dd>\n</dl>\n\
         <h4>Detail (Markdown)</h4>\n<pre class=\"detail\">{}</pre>\n",
        esc(&indicator),
        esc(card.summary.source()),
        esc(&card.source.label),
        esc(card.detail.source())
    );
    let lists = [
        (
            "Links",
            card.links.iter().map(|l| l.label.clone()).collect(),
        ),
        (
            "Suggestions",
            card.suggestions.iter().map(|s| s.label.clone()).collect(),
        ),
        (
            "Override reasons",
            card.override_reasons
                .codings()
                .iter()
                .map(|c| c.display.clone().unwrap_or_else(|| c.code.clone()))
                .collect::<Vec<_>>(),
        ),
    ];
    for (heading, items) in lists {
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "<h4>{heading}</h4>\n<ul>");
        for item in items {
            let _ = writeln!(out, "<li>{}</li>", esc(&item));
        }
        out.push_str("</ul>\n");
    }
}

/// The cases that name the rule, each with its hook and expectation.
fn test_cases(out: &mut String, cases: Cases<'_>) {
    out.push_str("<h3>Test cases</h3>\n");
    let cases = match cases {
        Ok(cases) if cases.is_empty() => {
            out.push_str("<p>No test case names this rule.</p>\n");
            return;
        }
        Ok(cases) => cases,
        Err(why) => {
            let _ = writeln!(out, "<p>The rule tests could not be read: {}</p>", esc(why));
            return;
        }
    };
    out.push_str(
        "<table class=\"cases\">\n<thead><tr><th scope=\"col\">Case</th>\
         <th scope=\"col\">Hook</th><th scope=\"col\">Expects</th>\
         <th scope=\"col\">File</th></tr></thead>\n<tbody>\n",
    );
    for case in cases {
        let file = case
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td><code>{}</code></td></tr>",
            esc(&case.case),
            case.hook.as_str(),
            if case.fires { "fires" } else { "quiet" },
            if case.fires { "fires" } else { "does not fire" },
            esc(&file)
        );
    }
    out.push_str("</tbody>\n</table>\n");
}
