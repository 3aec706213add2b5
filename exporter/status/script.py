"""`/status.js`, the page's only script, served from the sidecar itself (CSP `script-src
'self'`): every few seconds it fetches the page again and swaps the changed parts in place
(scroll position kept), says when the sidecar stops answering, waits while the tab is hidden,
and has a button to pause updates (WCAG 2.2.1: a person controls timed changes). Without it
the page is the same, only static."""

SCRIPT = """"use strict";
(() => {
  const every = Number(document.body.dataset.refresh || 5) * 1000;
  const button = document.getElementById("pause");
  const note = document.getElementById("refresh-note");
  let paused = false, timer = 0, failedSince = null;

  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(refresh, every);
  }

  function swap(fresh) {
    const summary = document.getElementById("summary");
    const next = fresh.getElementById("summary");
    if (summary && next && summary.textContent !== next.textContent) {
      summary.textContent = next.textContent;  // a live region: read out when it changes
      summary.className = next.className;
    }
    for (const id of ["updated", "content"]) {
      const old = document.getElementById(id), now = fresh.getElementById(id);
      if (old && now) old.replaceWith(document.adoptNode(now));
    }
    document.title = fresh.title;
  }

  async function refresh() {
    if (document.hidden) return schedule();
    try {
      const response = await fetch(location.pathname, {cache: "no-store"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      swap(new DOMParser().parseFromString(await response.text(), "text/html"));
      failedSince = null;
      note.textContent = "";
    } catch (error) {
      failedSince = failedSince || new Date();
      note.textContent = "The sidecar has not answered since " +
        failedSince.toISOString().slice(11, 19) + " UTC; retrying.";
    }
    schedule();
  }

  button.hidden = false;
  button.addEventListener("click", () => {
    paused = !paused;
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume updates" : "Pause updates";
    note.textContent = paused ? "Updates paused." : "";
    if (paused) clearTimeout(timer); else refresh();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !paused) refresh();
  });
  schedule();
})();
"""
