// Rein console: the only script (no inline ones; the CSP forbids them).
// On the approvals page, new approvals appear without a reload: the server
// sends `event: approvals` on /console/events when the pending set may
// have changed, and the table's rows are fetched again.
(function () {
  "use strict";
  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }
  ready(function () {
    var body = document.querySelector("tbody[data-rows]");
    if (!body || typeof EventSource === "undefined") { return; }
    var url = body.getAttribute("data-rows");
    var busy = false, again = false, polling = null;
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401 || r.redirected) { window.location.assign("/console/login"); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null) {
            // The fragment is the server's escaped HTML of <tr> rows.
            var t = document.createElement("tbody");
            t.innerHTML = html;
            body.replaceChildren.apply(body, Array.prototype.slice.call(t.childNodes));
            var live = document.getElementById("rows-status");
            if (live && polling === null) { live.textContent = "Updated " + new Date().toLocaleTimeString(); }
          }
        })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    }
    var events = new EventSource("/console/events");
    events.addEventListener("approvals", refresh);
    // The browser retries a dropped stream by itself; an answer other than
    // a stream (503: too many open, or the sign-in ended) closes it for
    // good. Then say so, look once (a rows fetch goes to the sign-in page
    // when the session ended), and fall back to polling the rows.
    events.addEventListener("error", function () {
      if (events.readyState !== EventSource.CLOSED || polling !== null) { return; }
      var live = document.getElementById("rows-status");
      if (live) {
        live.textContent = "Live updates stopped; reload the page to resume them (checking every 20 s meanwhile).";
        live.className = "error";
      }
      refresh();
      polling = window.setInterval(refresh, 20000);
    });
  });
})();
