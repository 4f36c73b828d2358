//! The rule catalogue page (`GET /console/rules`): every loaded rule, by
//! family, with its title, hooks, category, evidence, its logic in the
//! words `hookwise rules` uses ([`crate::rules::RuleSet::describe`]) and
//! its value sets with their codes. The filters (family, category, hook)
//! and the search run in the page's script over `data-` attributes and
//! text the server wrote; without the script every rule is shown.

use super::html::{esc, page as shell};
use crate::rules::model::{Citation, Criterion, Rule};
use crate::rules::{Family, RuleSet, ValueSet};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The catalogue page for `rules`.
pub fn page(rules: &RuleSet) -> String {
    let mut body = String::with_capacity(256 * 1024);
    let _ = write!(
        body,
        "<header>\n<h1>Rule catalogue</h1>\n<p>{} rules in {} families.</p>\n</header>\n<main>\n",
        rules.rules.len(),
        rules.families.len()
    );
    filters(&mut body, rules);
    let _ = write!(
        body,
        "<p id=\"shown\" role=\"status\" aria-live=\"polite\">{0} of {0} rules shown.</p>\n\
         <ol id=\"rules\" class=\"rules\">\n",
        rules.rules.len()
    );
    for family in &rules.families {
        for rule in family.rules.iter().map(|i| &rules.rules[*i]) {
            rule_item(&mut body, rules, family, rule);
        }
    }
    body.push_str("</ol>\n<p id=\"none\" hidden>No rule matches these filters.</p>\n</main>\n");
    shell("Rule catalogue", &body)
}

/// The filter form: a labelled select per facet and the search box.
fn filters(out: &mut String, rules: &RuleSet) {
    let families: Vec<(String, String)> = rules
        .families
        .iter()
        .map(|f| (f.id.clone(), f.title.clone()))
        .collect();
    let categories: BTreeSet<&str> = rules.rules.iter().map(|r| r.category.as_str()).collect();
    let hooks: BTreeSet<&str> = rules
        .rules
        .iter()
        .flat_map(|r| r.hooks.iter().map(|h| h.as_str()))
        .collect();
    let pairs = |set: BTreeSet<&str>| -> Vec<(String, String)> {
        set.into_iter()
            .map(|v| (v.to_string(), v.to_string()))
            .collect()
    };
    out.push_str("<form id=\"filters\" role=\"search\" aria-label=\"Filter the rules\">\n");
    select(
        out,
        "family",
        "Family",
        "All families",
        families.into_iter(),
    );
    select(
        out,
        "category",
        "Category",
        "All categories",
        pairs(categories).into_iter(),
    );
    select(out, "hook", "Hook", "All hooks", pairs(hooks).into_iter());
    out.push_str(
        "<p class=\"field search\"><label for=\"f-search\">Search</label>\n\
         <input type=\"search\" id=\"f-search\" name=\"q\" autocomplete=\"off\" \
         aria-describedby=\"f-search-hint\">\n\
         <span id=\"f-search-hint\" class=\"hint\">ids, titles, logic, evidence and codes; \
         every word must match</span></p>\n</form>\n",
    );
}

/// One labelled select of `(value, label)` options, the first one empty.
fn select(
    out: &mut String,
    name: &str,
    label: &str,
    any: &str,
    options: impl Iterator<Item = (String, String)>,
) {
    let _ = write!(
        out,
        "<p class=\"field\"><label for=\"f-{name}\">{label}</label>\n\
         <select id=\"f-{name}\" name=\"{name}\">\n<option value=\"\">{any}</option>\n"
    );
    for (value, text) in options {
        let _ = writeln!(
            out,
            "<option value=\"{}\">{}</option>",
            esc(&value),
            esc(&text)
        );
    }
    out.push_str("</select></p>\n");
}

/// One rule as a list item.
fn rule_item(out: &mut String, rules: &RuleSet, family: &Family, rule: &Rule) {
    let hooks = rule.hook_list(" ");
    let _ = write!(
        out,
        "<li class=\"rule\" id=\"rule-{id}\" data-id=\"{id}\" data-family=\"{family}\" \
         data-category=\"{category}\" data-hooks=\"{hooks}\">\n<article>\n\
         <h2><a class=\"title\" href=\"/console/rules/{id}\">{title}</a> <code class=\"id\">{id}</code></h2>\n\
{facts}",
        id = esc(&rule.id),
        family = esc(&family.id),
        category = rule.category.as_str(),
        hooks = esc(&hooks),
        title = esc(&rule.title),
        facts = facts(family, rule),
    );
    logic(out, rules, rule);
    value_sets(out, rules, rule);
    out.push_str("</article>\n</li>\n");
}

/// The rule's family, hooks, category and evidence, as a list.
pub(super) fn facts(family: &Family, rule: &Rule) -> String {
    format!(
        "<dl class=\"facts\">\n\
         <dt>Family</dt><dd>{}</dd>\n\
         <dt>Hooks</dt><dd>{}</dd>\n\
         <dt>Category</dt><dd>{}</dd>\n\
         <dt>Evidence</dt><dd>{}</dd>\n</dl>\n",
        esc(&family.title),
        esc(&rule.hook_list(", ")),
        rule.category.as_str(),
        citation(&rule.evidence),
    )
}

/// A citation: the society, year and link, and the recommendation
/// paraphrased.
pub(super) fn citation(e: &Citation) -> String {
    let source = format!("{} {}", esc(&e.society), e.year);
    // Only web links: a rule file cannot put a `javascript:` URL in the page.
    let source = if e.url.starts_with("https://") || e.url.starts_with("http://") {
        format!(
            "<a href=\"{}\" rel=\"noreferrer\">{source}</a>",
            esc(&e.url)
        )
    } else {
        source
    };
    format!(
        "{source}<br><span class=\"recommendation\">{}</span>",
        esc(&e.recommendation)
    )
}

/// When the rule fires, and each exclusion, in words.
pub(super) fn logic(out: &mut String, rules: &RuleSet, rule: &Rule) {
    let _ = write!(
        out,
        "<h3>Logic</h3>\n<p class=\"logic\"><strong>Fires when</strong> {}</p>\n",
        esc(&rules.describe(&rule.when))
    );
    if rule.exclusions.is_empty() {
        return;
    }
    out.push_str("<p><strong>Unless</strong></p>\n<ul class=\"exclusions\">\n");
    for exclusion in &rule.exclusions {
        let _ = writeln!(
            out,
            "<li><span class=\"label\">{}</span>: {}</li>",
            esc(&exclusion.label),
            esc(&rules.describe(&exclusion.when))
        );
    }
    out.push_str("</ul>\n");
}

/// The value sets the rule's criteria use, each with its codes, folded.
pub(super) fn value_sets(out: &mut String, rules: &RuleSet, rule: &Rule) {
    let sets = used_value_sets(rules, rule);
    if sets.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<details class=\"value-sets\">\n<summary>Value sets ({})</summary>",
        sets.len()
    );
    for set in sets {
        let mut codes: Vec<(&str, &str)> = set.codes().collect();
        codes.sort_unstable();
        let _ = write!(
            out,
            "<section class=\"value-set\">\n<h4>{}</h4>\n<p><code>{}</code>, {} codes</p>\n\
             <ul class=\"codes\">\n",
            esc(&set.title),
            esc(&set.url),
            codes.len()
        );
        for (system, code) in codes {
            let _ = writeln!(
                out,
                "<li><code>{}</code> <span class=\"system\">{}</span></li>",
                esc(code),
                esc(system)
            );
        }
        out.push_str("</ul>\n</section>\n");
    }
    out.push_str("</details>\n");
}

/// Every value set the rule's trigger and exclusions name, once each, in
/// the order they are first named.
fn used_value_sets<'r>(rules: &'r RuleSet, rule: &Rule) -> Vec<&'r ValueSet> {
    let mut used = Vec::new();
    for criterion in rule.criteria() {
        criterion.walk(&mut |c: &Criterion| {
            if let Some(items) = c.items() {
                used.push(items.value_set);
            }
        });
    }
    let mut seen: Vec<&str> = Vec::new();
    used.retain(|r| {
        let first = !seen.contains(&r.url.as_str());
        seen.push(&r.url);
        first
    });
    used.into_iter()
        .map(|r| &rules.value_sets[..][r.id])
        .collect()
}
