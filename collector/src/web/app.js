// Live update for the CNaaS dashboard: when the server says something changed, fetch the page's
// live part (main#live, its data-src) again and put it in place. No build step, no libraries.
"use strict";
(function () {
  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!live || !live.dataset.src || !window.EventSource) return;
  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(live.dataset.src, { credentials: "same-origin", cache: "no-store" });
      if (r.ok) {
        live.innerHTML = await r.text();
        live.dataset.updated = String(Date.now());
      } else if (r.status === 401 || r.redirected) {
        window.location.reload();
      }
    } catch (e) {
      // The next event or the timer tries again.
    }
    busy = false;
    if (again) { again = false; refresh(); }
  }
  const events = new EventSource("/ui/stream");
  events.addEventListener("changed", refresh);
  events.onopen = function () { if (status) status.className = "on"; };
  events.onerror = function () { if (status) status.className = "off"; };
  // Ages move even when nothing else does.
  setInterval(refresh, 30000);
})();
