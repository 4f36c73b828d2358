// The rule catalogue's filters and search: hides the rules that do not
// match the family, category and hook chosen and every word typed, and
// says how many are shown. Runs offline; loaded by the page, nothing else.
"use strict";

(function () {
  const form = document.getElementById("filters");
  const list = document.getElementById("rules");
  if (!form || !list) {
    return;
  }
  const rules = Array.from(list.querySelectorAll("li.rule"));
  const shown = document.getElementById("shown");
  const none = document.getElementById("none");
  const field = (name) => form.elements.namedItem(name);
  // Each rule's searchable text, once: what the page shows, codes included.
  const texts = new Map(rules.map((r) => [r, r.textContent.toLowerCase()]));

  function matches(rule, family, category, hook, words) {
    if (family && rule.dataset.family !== family) return false;
    if (category && rule.dataset.category !== category) return false;
    if (hook && !rule.dataset.hooks.split(" ").includes(hook)) return false;
    const text = texts.get(rule);
    return words.every((w) => text.includes(w));
  }

  function apply() {
    const family = field("family").value;
    const category = field("category").value;
    const hook = field("hook").value;
    const words = field("q").value.toLowerCase().split(/\s+/).filter(Boolean);
    let count = 0;
    for (const rule of rules) {
      const keep = matches(rule, family, category, hook, words);
      rule.hidden = !keep;
      if (keep) count += 1;
    }
    shown.textContent = count + " of " + rules.length + " rules shown.";
    none.hidden = count > 0;
  }

  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  // Enter in the search box must not submit (there is nowhere to post).
  form.addEventListener("submit", (event) => event.preventDefault());
  apply();
})();
