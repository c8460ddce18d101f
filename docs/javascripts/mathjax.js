// MathJax 3 for the whole site: the formulas of the Markdown pages (pymdownx.arithmatex writes
// them as \( \) and \[ \] inside .arithmatex elements) and those of the notebooks' Markdown cells
// ($ $ and $$ $$, rendered by mkdocs-jupyter inside .jp-RenderedMarkdown). Nothing else on a
// page is read, so a dollar sign in ordinary text, a code cell or an output stays a dollar sign.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    // Skip the whole page (header and container) except inside the two kinds of elements, and
    // there everything, <p> and <li> included (an ignore-all ".*|" would skip those too).
    ignoreHtmlClass: "md-header|md-container",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown",
  },
};

// mkdocs-material's page-change stream: typeset again after an instant-navigation page load.
document$.subscribe(() => {
  if (!window.MathJax.typesetPromise) return; // first load: MathJax typesets the page itself
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
