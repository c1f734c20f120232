// postback dashboard: the only script. Elements with data-refresh="URL" are re-filled from
// URL (server-rendered HTML) every data-every milliseconds while the page is visible.
(function () {
  "use strict";
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { el.innerHTML = html; el.dataset.refreshed = String(Date.now()); })
      .catch(function () { el.dataset.stale = "true"; });
  }
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    var every = parseInt(el.dataset.every || "2000", 10);
    setInterval(function () { refresh(el); }, every);
  });
})();
