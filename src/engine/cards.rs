//! Cards: turning findings into CDS Hooks cards, with text filled from what
//! each rule matched, suggestions bound to the matched draft orders, and
//! deterministic uuids so that a retried hookInstance gets the same cards.

use crate::cds::{
    Action, ActionType, Card, Coding, Indicator, Link, SelectionBehavior, Source, Suggestion,
};
use crate::rules::model::{ActionTemplate, CombinedCardTemplate, CreateTemplate, LinkTemplate};
use crate::rules::{Finding, render};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

/// Namespace for hookwise's name-based (v5) uuids.
const UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a7e_93d4_4b1a_8c55_2f0e_7d3b_9a41);

/// CDS Hooks caps summaries below 140 characters.
const MAX_SUMMARY_CHARS: usize = 139;

/// What a card needs to know about the request.
pub struct CardContext<'a> {
    /// The request's hookInstance: seeds the uuids.
    pub hook_instance: &'a str,
    /// The patient, as subject of created resources.
    pub patient_id: &'a str,
    /// Evaluation time, for "N days ago".
    pub now: OffsetDateTime,
}

/// Where an issued card came from: its rules, each with the suggestions and
/// draft orders that belong to it. Internal (the card log reads it), never
/// serialized: feedback that accepts some suggestions of a combined card is
/// attributed to the rules those suggestions came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOrigin {
    /// The card's uuid.
    pub card_uuid: String,
    /// The card's indicator as issued.
    pub indicator: Indicator,
    /// One entry per rule behind the card (several for a combined card).
    pub rules: Vec<RuleOrigin>,
}

/// One rule's part in an issued card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOrigin {
    /// Rule id.
    pub rule_id: String,
    /// Rule version.
    pub rule_version: String,
    /// Uuids of the card's suggestions that came from this rule.
    pub suggestion_uuids: Vec<String>,
    /// `Type/id` of the draft orders this rule matched (order hooks).
    pub draft_orders: Vec<String>,
}

impl RuleOrigin {
    /// The origin of `card`, rendered from `finding`; `drafts` are the
    /// request's draft order references.
    pub fn of(finding: &Finding<'_, '_>, card: &Card, drafts: &[String]) -> RuleOrigin {
        RuleOrigin {
            rule_id: finding.rule.id.clone(),
            rule_version: finding.rule.version.clone(),
            suggestion_uuids: card.suggestions.iter().map(|s| s.uuid.clone()).collect(),
            draft_orders: matched_drafts(finding, drafts),
        }
    }
}

/// `Type/id` of the request's draft orders (`drafts`) that `finding` matched,
/// sorted and distinct.
pub fn matched_drafts(finding: &Finding<'_, '_>, drafts: &[String]) -> Vec<String> {
    let mut matched: Vec<String> = finding
        .bindings
        .iter()
        .flat_map(|(_, items)| items)
        .filter_map(|b| b.reference.clone())
        .filter(|r| drafts.contains(r))
        .collect();
    matched.sort_unstable();
    matched.dedup();
    matched
}

/// Renders one finding as a card.
pub fn render_card(finding: &Finding<'_, '_>, ctx: &CardContext<'_>) -> Card {
    let template = &finding.rule.card;
    let card_uuid = Uuid::new_v5(
        &UUID_NAMESPACE,
        format!("{}/{}", ctx.hook_instance, finding.rule.id).as_bytes(),
    );
    let suggestions: Vec<Suggestion> = template
        .suggestions
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let actions: Vec<Action> = s
                .actions
                .iter()
                .flat_map(|a| actions_for(a, finding, ctx))
                .collect();
            (!actions.is_empty()).then(|| Suggestion {
                label: s.label.clone(),
                uuid: Uuid::new_v5(&card_uuid, i.to_string().as_bytes()).to_string(),
                is_recommended: s.is_recommended,
                actions,
            })
        })
        .collect();
    let selection_behavior = (!suggestions.is_empty()).then_some(
        template
            .selection_behavior
            .unwrap_or(SelectionBehavior::AtMostOne),
    );
    Card {
        uuid: card_uuid.to_string(),
        summary: shorten(render(&template.summary, finding, ctx.now).trim()),
        detail: Some(
            render(&template.detail, finding, ctx.now)
                .trim()
                .to_string(),
        ),
        indicator: template.indicator,
        source: Source {
            label: template.source.label.clone(),
            url: Some(template.source.url.clone()),
            topic: template.source.topic.clone(),
        },
        suggestions,
        selection_behavior,
        override_reasons: template.override_reasons.codings().to_vec(),
        links: template.links.iter().map(link).collect(),
    }
}

/// One finding's contribution to a combined card.
pub struct Part<'p> {
    /// The rule's title, heading its section.
    pub title: &'p str,
    /// The medications the finding names, by ingredient.
    pub drugs: Vec<String>,
    /// The finding's own card.
    pub card: Card,
}

impl<'p> Part<'p> {
    /// Renders a finding as a part.
    pub fn of(finding: &Finding<'p, 'p>, ctx: &CardContext<'_>) -> Part<'p> {
        let drugs = finding
            .bindings
            .iter()
            .flat_map(|(_, items)| items)
            .filter(|b| {
                b.resource.is_some()
                    || b.reference
                        .as_deref()
                        .is_some_and(|r| r.starts_with("Medication"))
            })
            .map(|b| b.drug_name())
            .collect();
        Part {
            title: &finding.rule.title,
            drugs,
            card: render_card(finding, ctx),
        }
    }
}

/// Gathers the cards of several findings into one (the deprescribing review
/// on patient-view): a section per rule, every rule's suggestions, the most
/// urgent indicator.
pub fn combine(
    template: &CombinedCardTemplate,
    service_id: &str,
    parts: Vec<Part<'_>>,
    ctx: &CardContext<'_>,
) -> Card {
    let mut drugs: Vec<&str> = parts
        .iter()
        .flat_map(|p| p.drugs.iter().map(String::as_str))
        .collect();
    drugs.sort_unstable();
    drugs.dedup();
    let summary = template
        .summary
        .replace("{{count}}", &parts.len().to_string());
    let summary = with_drug_list(&summary, &drugs);
    let detail = parts
        .iter()
        .map(|p| {
            format!(
                "### {}\n\n{}",
                p.title,
                p.card.detail.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut links: Vec<Link> = template.links.iter().map(link).collect();
    for link in parts.iter().flat_map(|p| &p.card.links) {
        if !links.iter().any(|l| l.url == link.url) {
            links.push(link.clone());
        }
    }
    let indicator = parts
        .iter()
        .map(|p| p.card.indicator)
        .max()
        .unwrap_or(Indicator::Info);
    let suggestions: Vec<Suggestion> = parts.into_iter().flat_map(|p| p.card.suggestions).collect();
    Card {
        uuid: Uuid::new_v5(
            &UUID_NAMESPACE,
            format!("{}/{service_id}", ctx.hook_instance).as_bytes(),
        )
        .to_string(),
        summary: shorten(&summary),
        detail: Some(detail),
        indicator,
        source: Source {
            label: template.source.label.clone(),
            url: Some(template.source.url.clone()),
            topic: None,
        },
        selection_behavior: (!suggestions.is_empty()).then_some(SelectionBehavior::Any),
        suggestions,
        override_reasons: template.override_reasons.clone(),
        links,
    }
}

/// Fills `{{drugs}}` with as many names as fit in a summary, then "and N
/// more", so a long review is never cut in the middle of a name.
fn with_drug_list(summary: &str, drugs: &[&str]) -> String {
    let filled = |list: &str| summary.replace("{{drugs}}", list);
    (0..=drugs.len())
        .rev()
        .map(|shown| match drugs.len() - shown {
            0 => drugs.join(", "),
            rest if shown == 0 => format!("{rest} drugs"),
            rest => format!("{} and {rest} more", drugs[..shown].join(", ")),
        })
        .map(|list| filled(&list))
        .find(|s| s.chars().count() <= MAX_SUMMARY_CHARS)
        .unwrap_or_else(|| filled(&format!("{} drugs", drugs.len())))
}

/// The actions of one template action: one delete per matched draft order
/// (none when that criterion matched nothing), or one create.
fn actions_for(
    action: &ActionTemplate,
    finding: &Finding<'_, '_>,
    ctx: &CardContext<'_>,
) -> Vec<Action> {
    match action {
        ActionTemplate::DeleteDraftOrder(name) => finding
            .bound(name)
            .iter()
            .filter_map(|b| {
                Some(Action {
                    kind: ActionType::Delete,
                    description: format!("Remove the draft order for {}", b.display),
                    resource: None,
                    resource_id: Some(b.reference.clone()?),
                })
            })
            .collect(),
        ActionTemplate::Taper(name) => finding
            .bound(name)
            .iter()
            .filter_map(|b| {
                Some(Action {
                    kind: ActionType::Create,
                    description: format!("Plan a taper of {}", b.display),
                    resource: Some(taper_task(
                        b.reference.as_deref()?,
                        b.display,
                        ctx.patient_id,
                    )),
                    resource_id: None,
                })
            })
            .collect(),
        ActionTemplate::Stop(name) => finding
            .bound(name)
            .iter()
            .filter_map(|b| {
                let mut resource = crate::json::to_value(b.resource?);
                resource["status"] = json!("stopped");
                Some(Action {
                    kind: ActionType::Update,
                    description: format!("Stop {}", b.display),
                    resource: Some(resource),
                    resource_id: None,
                })
            })
            .collect(),
        ActionTemplate::Create(create) => vec![Action {
            kind: ActionType::Create,
            description: create.description.clone(),
            resource: Some(draft_resource(create, ctx.patient_id)),
            resource_id: None,
        }],
    }
}

/// A proposed Task to taper and stop a medication.
fn taper_task(medication: &str, display: &str, patient_id: &str) -> Value {
    json!({
        "resourceType": "Task",
        "status": "draft",
        "intent": "proposal",
        "description": format!("Taper and stop {display}"),
        "focus": {"reference": medication},
        "for": {"reference": format!("Patient/{patient_id}")},
    })
}

/// A draft order for the alternative a guideline names.
fn draft_resource(create: &CreateTemplate, patient_id: &str) -> Value {
    let concept = concept(&create.code);
    let mut resource = json!({
        "resourceType": create.resource_type.as_str(),
        "status": "draft",
        "intent": "order",
        "subject": {"reference": format!("Patient/{patient_id}")},
    });
    resource[create.resource_type.code_element()] = concept;
    resource
}

/// The CodeableConcept of `code`, with `text` as well as the coding: EHRs
/// show `text` to the clinician, and the CDS Hooks sandbox applies a drug
/// swap only when both are present.
fn concept(code: &Coding) -> Value {
    let mut coding = json!({"system": code.system, "code": code.code});
    if let Some(display) = &code.display {
        coding["display"] = json!(display);
    }
    let text = code.display.as_deref().unwrap_or(&code.code);
    json!({"coding": [coding], "text": text})
}

/// A template's link as the card carries it.
fn link(template: &LinkTemplate) -> Link {
    Link {
        label: template.label.clone(),
        url: template.url.clone(),
        kind: "absolute",
    }
}

/// Whether rendering shortens `finding`'s summary (past
/// [`MAX_SUMMARY_CHARS`]): the rule cases report it, since the cut may drop
/// what the clinician needed to read.
pub fn summary_is_shortened(finding: &Finding<'_, '_>, now: time::OffsetDateTime) -> bool {
    let summary = render(&finding.rule.card.summary, finding, now);
    summary.trim().chars().count() > MAX_SUMMARY_CHARS
}

/// Cuts a summary that template fields made too long at a word boundary.
fn shorten(summary: &str) -> String {
    if summary.chars().count() <= MAX_SUMMARY_CHARS {
        return summary.to_string();
    }
    let cut: String = summary.chars().take(MAX_SUMMARY_CHARS - 1).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::ActionTemplate;

    /// Every resource the bundled rules can propose in a `create` action
    /// (an alternative order, a taper Task), checked as strict FHIR R4: an
    /// EHR applying the suggestion must be able to store it.
    #[test]
    fn every_proposed_resource_is_valid_r4() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-rules");
        let rules = crate::rules::load_dir(&dir).expect("bundled rules load");
        let mut checked = 0;
        for rule in &rules.rules {
            let actions = rule.card.suggestions.iter().flat_map(|s| &s.actions);
            for action in actions {
                let resource = match action {
                    ActionTemplate::Create(create) => draft_resource(create, "p1"),
                    ActionTemplate::Taper(_) => {
                        taper_task("MedicationRequest/m1", "lorazepam 1 MG Oral Tablet", "p1")
                    }
                    ActionTemplate::DeleteDraftOrder(_) | ActionTemplate::Stop(_) => continue,
                };
                let bytes = serde_json::to_vec(&resource).unwrap();
                if let Err(e) = hookwise_fhir_r4::validate_resource_json(&bytes) {
                    panic!(
                        "{} proposes an invalid resource: {e}\n{resource:#}",
                        rule.id
                    );
                }
                if resource["resourceType"] == "MedicationRequest" {
                    let concept = &resource["medicationCodeableConcept"];
                    assert!(
                        concept["text"].is_string() && concept["coding"][0]["code"].is_string(),
                        "{}: a drug swap needs text and coding: {concept}",
                        rule.id
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 9, "only {checked} proposed resources found");
    }

    #[test]
    fn a_long_drug_list_ends_with_how_many_more_instead_of_being_cut() {
        let summary = "Medication review for this older adult (9 to consider): {{drugs}}";
        assert_eq!(
            with_drug_list(summary, &["glipizide", "lorazepam"]),
            "Medication review for this older adult (9 to consider): glipizide, lorazepam"
        );
        let many = [
            "amitriptyline",
            "diphenhydramine",
            "glyburide",
            "lorazepam",
            "meperidine",
            "oxybutynin",
            "promethazine",
            "temazepam",
            "zolpidem",
            "cyclobenzaprine",
        ];
        let long = with_drug_list(summary, &many);
        assert!(long.chars().count() <= MAX_SUMMARY_CHARS, "{long}");
        assert!(long.ends_with(" more"), "{long}");
        let shown = long
            .split(": ")
            .nth(1)
            .unwrap()
            .split(" and ")
            .next()
            .unwrap();
        assert!(shown.split(", ").all(|name| many.contains(&name)), "{long}");
    }

    #[test]
    fn shortens_long_summaries_at_a_word() {
        let long = "word ".repeat(40);
        let short = shorten(long.trim());
        assert!(short.chars().count() <= MAX_SUMMARY_CHARS);
        assert!(short.ends_with("word…"));
        assert_eq!(shorten("brief"), "brief");
    }
}
