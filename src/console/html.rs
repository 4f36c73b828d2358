//! The console's HTML building blocks: escaping and the page shell every
//! console page shares (its own style sheet and script, nothing else).

use super::{CSS_PATH, JS_PATH};
use std::fmt::Write as _;

pub(super) use crate::html::escape as esc;

/// The console's navigation, first on every page.
const NAV: &str = "<nav class=\"console-nav\" aria-label=\"Console\">\
                   <a href=\"/console\">Dashboard</a> \
                   <a href=\"/console/rules\">Rules</a> \
                   <a href=\"/console/try\">Try a patient</a> \
                   <a href=\"/console/audit\">Audit</a></nav>\n";

/// A page titled `title` around `body` (already HTML).
pub(super) fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{} · hookwise console</title>\n\
         <link rel=\"stylesheet\" href=\"{CSS_PATH}\">\n\
         <script src=\"{JS_PATH}\" defer></script>\n</head>\n<body>\n{NAV}{body}</body>\n</html>\n",
        esc(title)
    );
    out
}

/// A page with one heading and one paragraph: refusals.
pub(super) fn message_page(title: &str, text: &str) -> String {
    let body = format!(
        "<main>\n<h1>{}</h1>\n<p>{}</p>\n</main>\n",
        esc(title),
        esc(text)
    );
    page(title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_in_text_and_attributes() {
        assert_eq!(
            esc(r#"<script>a & "b" 'c'</script>"#),
            "&lt;script&gt;a &amp; &quot;b&quot; &#39;c&#39;&lt;/script&gt;"
        );
        let page = message_page("<i>", "x < y");
        assert!(page.contains("<h1>&lt;i&gt;</h1>") && page.contains("x &lt; y"));
        assert!(!page.contains("<i>"));
    }
}
