//! Cards drawn as an EHR shows them: the indicator's colour and word, the
//! summary, the detail rendered from Markdown, the source, suggestions
//! with their actions, links and override reasons.
//!
//! Card detail is GitHub-flavoured Markdown with no raw HTML (the CDS
//! Hooks rule): raw HTML in it is shown as text, images as their alt
//! text, and only http and https links are links.

use super::html::esc;
use crate::cds::{ActionType, Card, Indicator};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use std::fmt::Write as _;

/// Markdown as HTML that can hold no markup but what Markdown writes.
pub fn markdown(text: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    // Whether each open link was kept, so its end is kept or dropped too.
    let mut links: Vec<bool> = Vec::new();
    let events = Parser::new_ext(text, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::HtmlBlock) | Event::End(TagEnd::HtmlBlock) => None,
        Event::Start(Tag::Link { ref dest_url, .. }) => {
            let keep = is_web_url(dest_url);
            links.push(keep);
            keep.then_some(event)
        }
        Event::End(TagEnd::Link) => links.pop().unwrap_or(false).then_some(event),
        // The alt text arrives as text between the two.
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        other => Some(other),
    });
    let mut out = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

/// An http or https URL: the only links a card may open.
pub fn is_web_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// The indicator's word, which the colour only repeats.
fn indicator_word(indicator: Indicator) -> &'static str {
    match indicator {
        Indicator::Info => "Info",
        Indicator::Warning => "Warning",
        Indicator::Critical => "Critical",
    }
}

/// `url` as a link labelled `label` when it is a web URL, else the label.
fn link(label: &str, url: &str) -> String {
    match is_web_url(url) {
        true => format!("<a href=\"{}\">{}</a>", esc(url), esc(label)),
        false => esc(label),
    }
}

/// Every card, or that there are none.
pub fn cards(out: &mut String, cards: &[Card]) {
    if cards.is_empty() {
        out.push_str(
            "<p class=\"no-cards\">No cards: the services have no advice for this patient.</p>\n",
        );
        return;
    }
    for (n, one) in cards.iter().enumerate() {
        card(out, one, n + 1);
    }
}

/// One card, numbered `n` on the page.
fn card(out: &mut String, card: &Card, n: usize) {
    let word = indicator_word(card.indicator);
    let _ = write!(
        out,
        "<article class=\"ehr-card indicator-{}\" aria-labelledby=\"card-{n}\">\n\
         <header><span class=\"indicator\">{word}</span> <h3 id=\"card-{n}\">{}</h3></header>\n",
        word.to_ascii_lowercase(),
        esc(&card.summary)
    );
    if let Some(detail) = &card.detail {
        let _ = writeln!(out, "<div class=\"card-detail\">{}</div>", markdown(detail));
    }
    let source = &card.source;
    let _ = writeln!(
        out,
        "<p class=\"card-source\">Source: {}</p>",
        match &source.url {
            Some(url) => link(&source.label, url),
            None => esc(&source.label),
        }
    );
    suggestions(out, card);
    if !card.links.is_empty() {
        out.push_str("<h4>Links</h4>\n<ul class=\"card-links\">\n");
        for l in &card.links {
            let _ = writeln!(out, "<li>{}</li>", link(&l.label, &l.url));
        }
        out.push_str("</ul>\n");
    }
    if !card.override_reasons.is_empty() {
        out.push_str("<h4>Override reasons</h4>\n<ul class=\"override-reasons\">\n");
        for reason in &card.override_reasons {
            let text = reason.display.as_deref().unwrap_or(&reason.code);
            let _ = writeln!(out, "<li>{}</li>", esc(text));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</article>\n");
}

/// The card's suggestions, each with the changes accepting it makes.
fn suggestions(out: &mut String, card: &Card) {
    if card.suggestions.is_empty() {
        return;
    }
    out.push_str("<h4>Suggestions</h4>\n<ul class=\"suggestions\">\n");
    for suggestion in &card.suggestions {
        let recommended = match suggestion.is_recommended {
            Some(true) => " <span class=\"recommended\">recommended</span>",
            _ => "",
        };
        let _ = write!(
            out,
            "<li><strong>{}</strong>{recommended}",
            esc(&suggestion.label)
        );
        if !suggestion.actions.is_empty() {
            out.push_str("\n<ul>\n");
            for action in &suggestion.actions {
                let verb = match action.kind {
                    ActionType::Create => "create",
                    ActionType::Update => "update",
                    ActionType::Delete => "delete",
                };
                let _ = writeln!(out, "<li>{verb}: {}</li>", esc(&action.description));
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::{Coding, Link, Source, Suggestion};

    #[test]
    fn markdown_renders_and_raw_html_is_text() {
        let html = markdown(
            "**Taper** slowly.\n\n- one\n- two\n\n<script>alert(1)</script>\n\nA <b>bold</b> claim.",
        );
        assert!(html.contains("<strong>Taper</strong>"), "{html}");
        assert!(html.contains("<li>one</li>"));
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;") && html.contains("&lt;b&gt;"),
            "{html}"
        );
    }

    #[test]
    fn only_web_links_are_links() {
        let html = markdown(
            "[AGS](https://www.americangeriatrics.org) [x](javascript:alert(1)) \
             [y](JAVASCRIPT:alert(2)) ![chart](https://example.org/c.png) <https://ok.example>",
        );
        assert!(
            html.contains("<a href=\"https://www.americangeriatrics.org\">AGS</a>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"https://ok.example\">"), "{html}");
        assert!(
            !html.to_lowercase().contains("javascript:alert(1)\""),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript") && !html.contains("href=\"JAVASCRIPT"));
        assert!(!html.contains("<img") && html.contains("chart"), "{html}");
        assert!(html.contains(">x<") || html.contains(" x "), "{html}");
    }

    fn sample() -> Card {
        Card {
            uuid: "u".into(),
            summary: "Avoid <alprazolam> at 80".into(),
            detail: Some("Falls *double*.".into()),
            indicator: Indicator::Warning,
            source: Source {
                label: "AGS Beers 2023".into(),
                url: Some(
                    "https://agsjournals.onlinelibrary.wiley.com/doi/10.1111/jgs.18372".into(),
                ),
                topic: None,
            },
            suggestions: vec![Suggestion {
                label: "Remove the order".into(),
                uuid: "s".into(),
                is_recommended: Some(true),
                actions: vec![crate::cds::Action {
                    kind: ActionType::Delete,
                    description: "Remove alprazolam".into(),
                    resource: None,
                    resource_id: Some("MedicationRequest/1".into()),
                }],
            }],
            selection_behavior: None,
            override_reasons: vec![Coding {
                system: "https://hookwise.dev/override-reason".into(),
                code: "benefit-outweighs-risk".into(),
                display: Some("Benefit outweighs risk".into()),
            }],
            links: vec![Link {
                label: "Taper guide".into(),
                url: "data:text/html,x".into(),
                kind: "absolute",
            }],
        }
    }

    #[test]
    fn a_card_shows_what_an_ehr_shows() {
        let mut out = String::new();
        cards(&mut out, &[sample()]);
        assert!(
            out.contains("class=\"ehr-card indicator-warning\""),
            "{out}"
        );
        assert!(out.contains("<span class=\"indicator\">Warning</span>"));
        assert!(out.contains("Avoid &lt;alprazolam&gt; at 80"));
        assert!(out.contains("<em>double</em>"));
        assert!(out.contains("<a href=\"https://agsjournals"));
        assert!(out.contains("<strong>Remove the order</strong> <span class=\"recommended\">"));
        assert!(out.contains("<li>delete: Remove alprazolam</li>"));
        assert!(out.contains("<li>Benefit outweighs risk</li>"));
        // A link that is not a web URL is shown as its label only.
        assert!(
            out.contains("<li>Taper guide</li>") && !out.contains("data:text"),
            "{out}"
        );
        let mut none = String::new();
        cards(&mut none, &[]);
        assert!(none.contains("No cards"));
    }
}
