"""A report as one self-contained HTML page: the Markdown report rendered section by section (so the page and the
Markdown can never hold different sections), its figure embedded, every table sortable by a click on a column
header, the reference rows (retrain, the retrain floor, doing nothing) styled apart from the methods."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

# First-column labels of the reference rows in every table kind (classification, pool, generation).
REFERENCE_LABELS = ("retrain", "retrain floor", "original", "retrain pool", "held-out retrain pool",
                    "original (do nothing)", "original (doing nothing)", "retrain_gen")

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1600px;margin:auto;padding:0 1em;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.9em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#eef;cursor:pointer;position:sticky;top:0}
th:after{content:" \\2195";color:#99a;font-size:0.8em}
td:first-child,th:first-child{text-align:left}
tr.ref td{background:#f3f3f3;font-style:italic}
p strong,li strong{color:#124}
.warn{color:#a00}
figure img{max-width:100%}
code{background:#f6f6f6;padding:0 3px}
"""

# Sort a table by the clicked column: numbers by value (the mean of `mean ± half`), the rest as text;
# a second click reverses the order.
SCRIPT = """
function cellValue(row, index) {
  const text = row.cells[index].innerText.trim();
  const number = parseFloat(text.replace(/[*\u2212]/g, m => m === "\u2212" ? "-" : ""));
  return isNaN(number) ? text.toLowerCase() : number;
}
document.querySelectorAll("table").forEach(table => {
  table.querySelectorAll("thead th").forEach((header, index) => {
    header.addEventListener("click", () => {
      const body = table.tBodies[0];
      const ascending = header.dataset.order !== "ascending";
      table.querySelectorAll("thead th").forEach(h => delete h.dataset.order);
      header.dataset.order = ascending ? "ascending" : "descending";
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = cellValue(a, index), y = cellValue(b, index);
        const order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return ascending ? order : -order;
      });
      rows.forEach(row => body.appendChild(row));
    });
  });
});
"""


def render_markdown(text: str) -> str:
    """CommonMark with tables (markdown-it-py), raw HTML escaped."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def mark_rows(body: str) -> str:
    """Give the reference rows their own class, and warnings theirs."""
    labels = "|".join(re.escape(html.escape(label)) for label in sorted(REFERENCE_LABELS, key=len, reverse=True))
    body = re.sub(rf"<tr>\n<td( style=\"[^\"]*\")?>((?:<strong>)?(?:{labels})(?:</strong>)?)</td>",
                  r'<tr class="ref">\n<td\1>\2</td>', body)
    return re.sub(r"<p>((?:(?!</p>).)*?<strong>WARNING(?:(?!</p>).)*)</p>", r'<p class="warn">\1</p>', body,
                  flags=re.S)


def html_page(text: str, title: str, figure: Path | None = None) -> str:
    """The page of a Markdown report `text`, with `figure` (a PNG) embedded under its title."""
    body = mark_rows(render_markdown(text))
    if figure is not None and figure.exists():
        data = base64.b64encode(figure.read_bytes()).decode("ascii")
        image = f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}"></figure>'
        body = body.replace("</h1>", "</h1>\n" + image, 1) if "</h1>" in body else image + body
    return "\n".join(["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
                      f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style></head><body>", body,
                      f"<script>{SCRIPT}</script>", "</body></html>", ""])
