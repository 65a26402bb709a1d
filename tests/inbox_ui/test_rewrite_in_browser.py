"""The rewrite against the browser's own parser: thousands of generated hostile documents are
rewritten, then parsed by Chromium (DOMParser); no script element, event handler,
``javascript:`` URL, ``<base>``, meta refresh or remote resource URL may come out of the
parse.

(CSS escapes that hide a URL from the rewrite, like ``u\\72l(...)``, are left to the
Content-Security-Policy, which test_csp_fence shows holding alone; they are not generated.)
"""

from __future__ import annotations

import random
from typing import Any

from selenium.webdriver.remote.webdriver import WebDriver

from smtpgate.inbox.htmlview import prepare_html

TAGS = [
    "img", "image", "a", "area", "link", "style", "script", "svg", "math", "iframe", "object", "embed", "video",
    "audio", "source", "input", "table", "td", "body", "meta", "base", "form", "button", "use", "feImage",
    "template", "noscript", "textarea", "title", "xmp", "select", "p", "div", "br", "SCRIPT", "Img",
]  # fmt: skip
ATTRIBUTES = [
    "src", "srcset", "href", "xlink:href", "background", "poster", "data", "style", "onerror", "onload", "ONclick",
    "action", "formaction", "http-equiv", "content", "rel", "type", "ping", "SRC", "lowsrc",
]  # fmt: skip
VALUES = [
    "https://r.test/a", "//r.test/b", " HTTPS://r.test/c", "&#104;ttps://r.test/d", "java&#115;cript:x()",
    "javascript:x()", "cid:x", "data:image/png;base64,AA", "background:url(https://r.test/e)",
    "background:url('//r.test/f')", "refresh", "0;url=https://r.test/g", "stylesheet", "x", "https://r.test/h 2x",
    "a.png 1x, //r.test/i 2x", "\thttps://r.test/j", "htt&#x70;s://r.test/k",
]  # fmt: skip
NOISE = [
    "<!--", "-->", "<![CDATA[", "]]>", "</", "<", ">", '"', "'", "=", "/", " ", "\n", "</script>", "</style>",
    "<!-->", "&", ";", "text", "</svg>", "</math>", "<?", "<!x", "</a>", "</table>",
]  # fmt: skip
CSS = [
    "@import 'https://r.test/l';", "@import url(//r.test/m);", "a{background:url(https://r.test/n)}",
    "b{background-image:url( \"//r.test/o\" )}", "@font-face{src:url(https://r.test/p)}",
    "c{background:image-set('https://r.test/q' 1x)}", "</style><img src=https://r.test/r>", "<img src=//r.test/s>",
]  # fmt: skip

CHECK = """
const [documents] = arguments;
const problems = [];
const loads = new Set(["src", "srcset", "lowsrc", "dynsrc", "background", "poster", "data", "href", "xlink:href",
  "action", "formaction", "ping", "codebase", "archive", "code", "classid"]);
// What CSS loads: url(...) and quoted strings (@import "...", image-set("...")).
const cssLoads = /(url\\(\\s*['"]?\\s*|['"]\\s*)(https?:)?\\/\\/r\\.test/i;
const remote = /^(https?:)?\\/\\/r\\.test/i;
documents.forEach((html, index) => {
  const doc = new DOMParser().parseFromString(html, "text/html");
  const report = (what) => problems.push([index, what]);
  for (const element of doc.querySelectorAll("*")) {
    const tag = element.localName.toLowerCase();
    if (tag === "script") report("a script element");
    if (tag === "base") report("a base element");
    if (tag === "meta" && /refresh/i.test(element.getAttribute("http-equiv") || "")) report("a meta refresh");
    if (tag === "style" && cssLoads.test(element.textContent)) report("a remote URL in a style element");
    for (const attribute of element.attributes) {
      const name = attribute.name.toLowerCase();
      const value = attribute.value;
      if (name.startsWith("on")) report(`an event handler ${name} on ${tag}`);
      if (/^\\s*(javascript|vbscript):/i.test(value)) report(`a ${name}=javascript: on ${tag}`);
      if (name === "style" && cssLoads.test(value)) report(`a remote URL in the style of ${tag}`);
      const hrefLoads = ["link", "image", "use", "feimage", "base"].includes(tag);
      const isHref = name === "href" || name === "xlink:href";
      const elsewhere = (isHref && !hrefLoads) || (name === "data" && tag !== "object");
      const urls = name === "srcset" ? value.split(",") : [value];
      if (loads.has(name) && !elsewhere && urls.some((url) => remote.test(url.trim()))) {
        report(`a remote ${name} on ${tag}: ${value}`);
      }
    }
  }
});
return problems;
"""


def attribute(rng: random.Random) -> str:
    name, value = rng.choice(ATTRIBUTES), rng.choice(VALUES)
    form = rng.randrange(6)
    if form == 0:
        return f' {name}="{value}"'
    if form == 1:
        return f" {name}='{value}'"
    if form == 2:
        return f" {name}={value.replace(' ', '')}"
    if form == 3:
        return f' {name} = "{value}"'
    if form == 4:
        return f"/{name}={value.replace(' ', '')}"
    return f' {name}="{value}"{rng.choice(ATTRIBUTES)}=x'


def document(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randrange(1, 14)):
        roll = rng.random()
        if roll < 0.5:
            tag = rng.choice(TAGS)
            attrs = "".join(attribute(rng) for _ in range(rng.randrange(0, 4)))
            parts.append(f"<{tag}{attrs}{rng.choice(['>', '/>', ' >', ''])}")
            if tag.lower() == "style":
                parts.append(rng.choice(CSS))
        elif roll < 0.85:
            parts.append(rng.choice(NOISE))
        else:
            parts.append(f"</{rng.choice(TAGS)}>")
    return "".join(parts)


def test_no_generated_document_gets_past_the_rewrite_in_chromium(browser: WebDriver) -> None:
    rng = random.Random(20261202)
    sources = [document(rng) for _ in range(3000)]
    rewritten = [
        prepare_html(source, lambda content_id: f"../api/v1/message/M/part/{content_id}") for source in sources
    ]
    browser.get("about:blank")
    problems: list[Any] = browser.execute_script(CHECK, [result.html for result in rewritten])
    assert [(sources[index], rewritten[index].html, what) for index, what in problems[:5]] == []
