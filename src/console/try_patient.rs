//! Try a patient (`/console/try`): paste a CDS Hooks request, or a FHIR
//! Bundle with a hook and a draft order picked, and see the cards as an
//! EHR shows them ([`card_view`](super::card_view)) beside the trace of
//! every rule of the hook's services, the one `hookwise eval --explain`
//! prints.
//!
//! A trial runs on an engine of its own: offline (nothing is fetched from
//! an EHR), with no alert-fatigue history, evaluated on the record as it
//! stood at the time asked for, and not counted in the metrics. Nothing
//! pasted is stored or logged.

use super::card_view;
use super::html::{esc, page as shell};
use super::pasted::{self, BundleProblem, Order, Pasted};
use crate::cds::{Hook, MAX_JSON_DEPTH, parse_request};
use crate::engine::{CallError, Engine, ExplainedVerdict, RuleExplanation, Trial};
use crate::fhir::{parse_datetime, timeline::started};
use crate::json::borrow_value;
use axum::http::StatusCode;
use serde::Deserialize;
use std::fmt::Write as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The form as posted; every field may be missing.
#[derive(Debug, Default, Deserialize)]
pub struct TrialForm {
    /// The pasted request or Bundle.
    #[serde(default)]
    pub input: String,
    /// For a Bundle: the hook to try.
    #[serde(default)]
    pub hook: String,
    /// For a Bundle on an order hook: the entry index of the draft order.
    #[serde(default)]
    pub order: String,
    /// When to evaluate at (a date or date-time); empty for the draft
    /// order's own time, else now.
    #[serde(default)]
    pub at: String,
}

/// What a trial came to, for the page.
pub struct TrialOutcome {
    /// The page's status: 200 with cards, 4xx when the input is at fault.
    pub status: StatusCode,
    /// The whole page.
    pub page: String,
}

/// What the page shows under the form.
enum Shown {
    /// Nothing yet: the empty form.
    Nothing,
    /// What is wrong with the input, or what is still to pick.
    Problem(String),
    /// A prompt, not a fault: the orders are now listed to pick from.
    PickOrder,
    /// The cards and the trace.
    Ran {
        trial: Trial,
        hook: Hook,
        at: OffsetDateTime,
        notes: Vec<&'static str>,
    },
}

/// The empty form.
pub fn empty_page() -> String {
    page(&TrialForm::default(), &[], &Shown::Nothing)
}

/// Runs a posted form on `engine` and draws the page.
pub async fn run(engine: &Engine, form: &TrialForm) -> TrialOutcome {
    let (pasted, orders) = match pasted::read(&form.input) {
        Ok(Pasted::Bundle(bundle)) => {
            let orders = pasted::orders(&bundle);
            (Ok(Pasted::Bundle(bundle)), orders)
        }
        other => (other, Vec::new()),
    };
    let (status, shown) = match pasted {
        Err(problem) => (StatusCode::UNPROCESSABLE_ENTITY, Shown::Problem(problem)),
        Ok(pasted) => match trial(engine, form, pasted, &orders).await {
            Ok(shown) => (StatusCode::OK, shown),
            Err((status, problem)) => (status, Shown::Problem(problem)),
        },
    };
    TrialOutcome {
        status,
        page: page(form, &orders, &shown),
    }
}

/// The page for a body too large to read.
pub fn too_large_page() -> TrialOutcome {
    TrialOutcome {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        page: page(
            &TrialForm::default(),
            &[],
            &Shown::Problem(pasted::too_large()),
        ),
    }
}

/// The page for a body that is not the form.
pub fn not_a_form_page() -> TrialOutcome {
    TrialOutcome {
        status: StatusCode::BAD_REQUEST,
        page: page(
            &TrialForm::default(),
            &[],
            &Shown::Problem("The trial was not sent from the form on this page.".into()),
        ),
    }
}

type Failure = (StatusCode, String);

/// Builds the request, picks the time and runs every service of the hook.
async fn trial(
    engine: &Engine,
    form: &TrialForm,
    pasted: Pasted,
    orders: &[Order],
) -> Result<Shown, Failure> {
    let unprocessable = |why: String| (StatusCode::UNPROCESSABLE_ENTITY, why);
    let asked_at = match form.at.trim() {
        "" => None,
        text => Some(parse_datetime(text).ok_or_else(|| {
            unprocessable(format!(
                "{text:?} is not a date or date-time: write 2024-05-01 or 2024-05-01T09:30:00Z."
            ))
        })?),
    };
    let mut notes = Vec::new();
    let (request, hook, order_time) = match pasted {
        Pasted::Request(request) => {
            let (request, dropped) = pasted::offline(request);
            if dropped {
                notes.push(
                    "The request's fhirServer and fhirAuthorization were left out: a trial \
                     fetches nothing from an EHR and uses no token pasted.",
                );
            }
            let hook = request
                .get("hook")
                .and_then(|h| h.as_str())
                .and_then(Hook::parse);
            (request, hook, None)
        }
        Pasted::Bundle(bundle) => {
            let hook = Hook::parse(&form.hook).ok_or_else(|| {
                unprocessable("Pick the hook to try the Bundle's patient on.".into())
            })?;
            let order = form.order.trim().parse::<usize>().ok();
            let keys = prefetch_keys(engine, hook);
            let request = match pasted::request_from_bundle(&bundle, hook, order, &keys) {
                Ok(request) => request,
                Err(BundleProblem::NoOrderPicked) if orders.is_empty() => {
                    return Err(unprocessable(format!(
                        "{hook} needs a draft order, and this Bundle holds none: add a \
                         MedicationRequest or ServiceRequest, or try patient-view."
                    )));
                }
                Err(BundleProblem::NoOrderPicked) => return Ok(Shown::PickOrder),
                Err(BundleProblem::Invalid(why)) => return Err(unprocessable(why)),
            };
            let order_time = order
                .and_then(|entry| bundle.get("entry")?.get(entry)?.get("resource"))
                .and_then(|resource| started(&borrow_value(resource)));
            (request, Some(hook), order_time)
        }
    };
    let Some(hook) = hook else {
        let named = request
            .get("hook")
            .map(|h| h.to_string())
            .unwrap_or_default();
        return Err(unprocessable(format!(
            "The request's hook {named} is not one hookwise serves: patient-view, \
             order-select or order-sign."
        )));
    };
    let at = asked_at
        .or(order_time)
        .unwrap_or_else(OffsetDateTime::now_utc);
    let body = serde_json::to_vec(&request).map_err(|e| unprocessable(e.to_string()))?;
    let parsed = parse_request(&body, MAX_JSON_DEPTH).map_err(|e| {
        let place = match e.path.is_empty() {
            true => String::new(),
            false => format!(" at {}", e.path),
        };
        unprocessable(format!(
            "This is not a valid CDS Hooks request{place}: {}.",
            e.message
        ))
    })?;
    let services = engine.services_of_hook(hook);
    let trial = engine
        .trial(&services, &parsed, at)
        .await
        .map_err(|(service, e)| call_failure(&service, e))?;
    Ok(Shown::Ran {
        trial,
        hook,
        at,
        notes,
    })
}

/// Every prefetch key the services of `hook` advertise.
fn prefetch_keys(engine: &Engine, hook: Hook) -> Vec<crate::fhir::PrefetchKey> {
    let rules = &engine.rules;
    let services = rules.services.iter().filter(|s| s.hook == hook);
    let mut keys: Vec<crate::fhir::PrefetchKey> = Vec::new();
    for service in services {
        for key in rules.prefetch_keys(rules.rules_for(service)) {
            if !keys.iter().any(|k| k.key == key.key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// A call that failed, in the page's words.
fn call_failure(service: &str, error: CallError) -> Failure {
    match error {
        CallError::PreconditionFailed(why) => (
            StatusCode::PRECONDITION_FAILED,
            format!(
                "{service} could not run: {why}. A trial fetches nothing from an EHR, so the \
                 request must carry the prefetch its services ask for (paste a Bundle to have \
                 the console build it)."
            ),
        ),
        CallError::BadRequest { path, message } => {
            let place = match path.is_empty() {
                true => String::new(),
                false => format!(" at {path}"),
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{service} refused the request{place}: {message}."),
            )
        }
        other @ CallError::UnknownService { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, other.to_string())
        }
    }
}

/// The whole page: the form, then what `shown` holds.
fn page(form: &TrialForm, orders: &[Order], shown: &Shown) -> String {
    let mut body = String::with_capacity(form.input.len() + 32 * 1024);
    body.push_str(
        "<header>\n<h1>Try a patient</h1>\n<p>Paste a CDS Hooks request, or a FHIR Bundle of a \
         patient's record with a hook and a draft order picked, and see the cards an EHR would \
         show and why each rule did or did not fire. Nothing pasted is stored or logged, \
         nothing is fetched from an EHR, and trials do not count in the figures or \
         metrics.</p>\n</header>\n<main>\n",
    );
    match shown {
        Shown::Problem(problem) => {
            let _ = writeln!(
                body,
                "<p class=\"problem\" role=\"alert\">{}</p>",
                esc(problem)
            );
        }
        Shown::PickOrder => body.push_str(
            "<p class=\"prompt\" role=\"status\">The Bundle's orders are listed under Draft \
             order: pick the one being ordered, then run again.</p>\n",
        ),
        Shown::Nothing | Shown::Ran { .. } => {}
    }
    form_html(&mut body, form, orders);
    if let Shown::Ran {
        trial,
        hook,
        at,
        notes,
    } = shown
    {
        results(&mut body, trial, *hook, *at, notes);
    }
    body.push_str("</main>\n");
    shell("Try a patient", &body)
}

/// The form, holding what was posted.
fn form_html(out: &mut String, form: &TrialForm, orders: &[Order]) {
    let _ = write!(
        out,
        "<form class=\"trial\" method=\"post\" action=\"/console/try\">\n\
         <p><label for=\"try-input\">CDS Hooks request or FHIR Bundle (JSON)</label>\n\
         <textarea id=\"try-input\" name=\"input\" rows=\"14\" spellcheck=\"false\" \
         autocomplete=\"off\">{}</textarea></p>\n\
         <div class=\"trial-options\">\n\
         <p><label for=\"try-hook\">Hook</label>\n<select id=\"try-hook\" name=\"hook\" \
         aria-describedby=\"try-hook-help\">\n",
        esc(&form.input)
    );
    for hook in Hook::ALL {
        let chosen = match form.hook == hook.as_str() {
            true => " selected",
            false => "",
        };
        let _ = writeln!(out, "<option{chosen}>{hook}</option>");
    }
    out.push_str(
        "</select>\n<small id=\"try-hook-help\">For a Bundle; a request names its own.</small></p>\n\
         <p><label for=\"try-order\">Draft order</label>\n<select id=\"try-order\" name=\"order\" \
         aria-describedby=\"try-order-help\">\n<option value=\"\">none</option>\n",
    );
    for order in orders {
        let chosen = match form.order.trim() == order.entry.to_string() {
            true => " selected",
            false => "",
        };
        let _ = writeln!(
            out,
            "<option value=\"{}\"{chosen}>{}</option>",
            order.entry,
            esc(&order.label)
        );
    }
    let _ = write!(
        out,
        "</select>\n<small id=\"try-order-help\">For a Bundle on an order hook: its orders are \
         listed once it has been run.</small></p>\n\
         <p><label for=\"try-at\">Evaluate at</label>\n<input id=\"try-at\" name=\"at\" \
         type=\"text\" value=\"{}\" placeholder=\"2024-05-01T09:30:00Z\" \
         aria-describedby=\"try-at-help\">\n<small id=\"try-at-help\">Empty: the draft order's \
         date, else now.</small></p>\n</div>\n\
         <p><button type=\"submit\">Run</button></p>\n</form>\n",
        esc(&form.at)
    );
}

/// The cards, then the trace.
fn results(out: &mut String, trial: &Trial, hook: Hook, at: OffsetDateTime, notes: &[&str]) {
    let when = at.format(&Rfc3339).unwrap_or_default();
    let _ = writeln!(
        out,
        "<section class=\"trial-result\" aria-labelledby=\"cards-heading\">\n\
         <h2 id=\"cards-heading\">Cards ({})</h2>\n<p>{hook}, evaluated at {}.</p>",
        trial.response.cards.len(),
        esc(&when)
    );
    for note in notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    if trial.deadline_exceeded {
        out.push_str(
            "<p class=\"problem\" role=\"alert\">A service ran past its deadline, and an EHR \
             would have had no cards from it.</p>\n",
        );
    }
    card_view::cards(out, &trial.response.cards);
    out.push_str("</section>\n");
    trace(out, &trial.rules);
}

/// The order the trace lists verdicts in: what happened before what did not.
fn rank(verdict: ExplainedVerdict) -> u8 {
    match verdict {
        ExplainedVerdict::Fires => 0,
        ExplainedVerdict::Excluded => 1,
        ExplainedVerdict::NoData => 2,
        ExplainedVerdict::DoesNotApply => 3,
    }
}

/// The verdict in words.
fn verdict_word(verdict: ExplainedVerdict) -> &'static str {
    match verdict {
        ExplainedVerdict::Fires => "fires",
        ExplainedVerdict::Excluded => "excluded",
        ExplainedVerdict::NoData => "no data",
        ExplainedVerdict::DoesNotApply => "does not apply",
    }
}

/// Every rule's verdict: the rules evaluated in a table, with why and
/// what a fired rule matched; the rules nothing could trigger listed
/// under one heading, folded (an order hook has over a hundred).
fn trace(out: &mut String, rules: &[RuleExplanation]) {
    let (mut evaluated, untriggered): (Vec<&RuleExplanation>, Vec<&RuleExplanation>) =
        rules.iter().partition(|r| r.triggered);
    evaluated.sort_by_key(|r| rank(r.verdict));
    let count = |v| rules.iter().filter(|r| r.verdict == v).count();
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"trace-heading\">\n<h2 id=\"trace-heading\">Every rule</h2>\n\
         <p>{} fire, {} excluded, {} without the data to tell, {} do not apply \
         (the trace of <code>hookwise eval --explain</code>).</p>",
        count(ExplainedVerdict::Fires),
        count(ExplainedVerdict::Excluded),
        count(ExplainedVerdict::NoData),
        count(ExplainedVerdict::DoesNotApply)
    );
    out.push_str(
        "<table class=\"cases trace\">\n<caption>The rules evaluated, and why each did or did \
         not fire</caption>\n<thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">Verdict</th>\
         <th scope=\"col\">Why</th><th scope=\"col\">Matched</th></tr></thead>\n<tbody>\n",
    );
    for rule in evaluated {
        let word = verdict_word(rule.verdict);
        let matched = rule
            .matched
            .as_ref()
            .map(|m| format!("<code>{}</code>", esc(&m.to_string())))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr class=\"verdict-{}\"><td>{}</td><td>{word}</td><td>{}</td><td>{matched}</td></tr>",
            word.replace(' ', "-"),
            rule_link(&rule.id),
            esc(&rule.why)
        );
    }
    out.push_str("</tbody>\n</table>\n");
    if let Some(first) = untriggered.first() {
        let _ = write!(
            out,
            "<details class=\"untriggered\">\n<summary>{} more do not apply: {}</summary>\n\
             <ul class=\"untriggered-rules\">\n",
            untriggered.len(),
            esc(&first.why)
        );
        for rule in &untriggered {
            let _ = writeln!(out, "<li>{}</li>", rule_link(&rule.id));
        }
        out.push_str("</ul>\n</details>\n");
    }
    out.push_str("</section>\n");
}

/// A link to a rule's console page.
fn rule_link(id: &str) -> String {
    format!("<a href=\"/console/rules/{0}\">{0}</a>", esc(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn explained(id: &str, verdict: ExplainedVerdict) -> RuleExplanation {
        RuleExplanation {
            id: id.into(),
            verdict,
            why: format!("why {id}"),
            matched: (verdict == ExplainedVerdict::Fires).then(|| json!({"drug": "308048"})),
            triggered: id != "untouched",
        }
    }

    #[test]
    fn the_trace_lists_what_fired_first_and_counts_each_verdict() {
        let mut out = String::new();
        trace(
            &mut out,
            &[
                explained("quiet", ExplainedVerdict::DoesNotApply),
                explained("held", ExplainedVerdict::Excluded),
                explained("loud", ExplainedVerdict::Fires),
                explained("untouched", ExplainedVerdict::DoesNotApply),
            ],
        );
        let (loud, held, quiet) = (
            out.find("/console/rules/loud").unwrap(),
            out.find("/console/rules/held").unwrap(),
            out.find("/console/rules/quiet").unwrap(),
        );
        assert!(loud < held && held < quiet, "{out}");
        assert!(out.contains("1 fire, 1 excluded, 0 without the data to tell, 2 do not apply"));
        // What nothing triggered is folded below the table.
        let (table, folded) = out.split_once("<details").unwrap();
        assert!(!table.contains("untouched") && folded.contains("/console/rules/untouched"));
        assert!(
            folded.contains("1 more do not apply: why untouched"),
            "{folded}"
        );
        assert!(
            out.contains("<code>{&quot;drug&quot;:&quot;308048&quot;}</code>"),
            "{out}"
        );
    }

    #[test]
    fn the_form_keeps_what_was_posted_escaped() {
        let form = TrialForm {
            input: "</textarea><script>x</script>".into(),
            hook: "order-sign".into(),
            order: "3".into(),
            at: "\"2024\"".into(),
        };
        let orders = [Order {
            entry: 3,
            label: "MedicationRequest · <b> · 2024-01-01".into(),
            at: None,
        }];
        let page = page(&form, &orders, &Shown::Problem("bad <input>".into()));
        assert!(!page.contains("<script>x") && page.contains("&lt;/textarea&gt;"));
        assert!(page.contains("<option selected>order-sign</option>"));
        assert!(page.contains("<option value=\"3\" selected>MedicationRequest · &lt;b&gt;"));
        assert!(page.contains("value=\"&quot;2024&quot;\""));
        assert!(page.contains("role=\"alert\">bad &lt;input&gt;</p>"));
        for id in ["try-input", "try-hook", "try-order", "try-at"] {
            assert!(
                page.contains(&format!("<label for=\"{id}\">")),
                "{id} unlabelled"
            );
        }
    }
}
