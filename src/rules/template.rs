//! Card text templates: `{{age}}`, `{{sex}}`, `{{exclusions}}` and
//! `{{name.field}}` for what a criterion bound with `as: name`. Alternatives
//! separated by `|` render the first that is not empty, e.g.
//! `{{order.display|drug.list}}` on a rule that serves several hooks.

use super::eval::Finding;

/// Fields a binding exposes.
pub const BINDING_FIELDS: [&str; 7] = [
    "display", "list", "count", "date", "daysAgo", "days", "value",
];

/// Global fields.
pub const GLOBAL_FIELDS: [&str; 3] = ["age", "sex", "exclusions"];

/// The `{{...}}` placeholders in a template, trimmed.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push(rest[start + 2..start + 2 + len].trim());
        rest = &rest[start + 2 + len + 2..];
    }
    out
}

/// Checks a placeholder (and each of its `|` alternatives) against the names
/// a rule binds; returns a problem.
pub fn check_placeholder(placeholder: &str, bound_names: &[&str]) -> Option<String> {
    placeholder
        .split('|')
        .map(str::trim)
        .find_map(|p| check_field(p, bound_names))
}

fn check_field(placeholder: &str, bound_names: &[&str]) -> Option<String> {
    if GLOBAL_FIELDS.contains(&placeholder) {
        return None;
    }
    let Some((name, field)) = placeholder.split_once('.') else {
        return Some(format!(
            "unknown field {{{{{placeholder}}}}}; use age, sex, exclusions or name.field"
        ));
    };
    if !bound_names.contains(&name) {
        return Some(format!(
            "{{{{{placeholder}}}}} names {name:?}, which no criterion binds with `as`"
        ));
    }
    if !BINDING_FIELDS.contains(&field) {
        return Some(format!(
            "{{{{{placeholder}}}}}: unknown field {field:?}; use one of {}",
            BINDING_FIELDS.join(", ")
        ));
    }
    None
}

/// Fills a template from a finding. A binding whose criterion did not match
/// renders as empty text.
pub fn render(template: &str, finding: &Finding<'_, '_>, now: time::OffsetDateTime) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let placeholder = &rest[start + 2..start + 2 + len];
        let value = placeholder
            .split('|')
            .map(|p| value_of(p.trim(), finding, now))
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        out.push_str(&value);
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

fn value_of(placeholder: &str, finding: &Finding<'_, '_>, now: time::OffsetDateTime) -> String {
    match placeholder {
        "age" => return finding.age.map(|a| a.to_string()).unwrap_or_default(),
        "sex" => return finding.sex.unwrap_or_default().to_string(),
        "exclusions" => {
            let labels: Vec<&str> = finding
                .rule
                .exclusions
                .iter()
                .map(|e| e.label.as_str())
                .collect();
            return if labels.is_empty() {
                "none defined".into()
            } else {
                labels.join("; ")
            };
        }
        _ => {}
    }
    let Some((name, field)) = placeholder.split_once('.') else {
        return String::new();
    };
    let items = finding.bound(name);
    let Some(first) = items.first() else {
        return String::new();
    };
    match field {
        "display" => first.display.to_string(),
        "list" => {
            let mut names: Vec<&str> = items.iter().map(|b| b.display).collect();
            names.dedup();
            names.join(", ")
        }
        "count" => items.len().to_string(),
        "date" => first
            .date
            .map(|d| d.date().to_string())
            .unwrap_or_else(|| "an unknown date".into()),
        "daysAgo" => first
            .date
            .map(|d| (now - d).whole_days().to_string())
            .unwrap_or_else(|| "an unknown number of".into()),
        "days" => first
            .days_active
            .map(|d| d.to_string())
            .unwrap_or_else(|| "an unknown number of".into()),
        "value" => first
            .value
            .map(|(v, unit)| format!("{v} {}", unit.unwrap_or("")).trim_end().to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_checks_placeholders() {
        assert_eq!(
            placeholders("a {{ age }} b {{lbp.daysAgo}}"),
            ["age", "lbp.daysAgo"]
        );
        assert!(check_placeholder("lbp.daysAgo", &["lbp"]).is_none());
        assert!(
            check_placeholder("lbp.colour", &["lbp"])
                .unwrap()
                .contains("colour")
        );
        assert!(
            check_placeholder("order.display", &["lbp"])
                .unwrap()
                .contains("order")
        );
        assert!(check_placeholder("weight", &[]).is_some());
        assert!(check_placeholder("order.display|drug.list", &["order", "drug"]).is_none());
        assert!(
            check_placeholder("order.display|dose.list", &["order"])
                .unwrap()
                .contains("dose")
        );
    }
}
