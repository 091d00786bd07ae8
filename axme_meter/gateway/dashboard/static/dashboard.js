// axme_meter dashboard: live refresh of server-rendered regions, filter-as-you-type, confirm dialogs.
// The server renders (and escapes) every fragment; this script only swaps HTML it fetched from /dashboard.
//
// The live poller never overlaps itself: each region fetches, waits for the answer (or the failure), and
// only then schedules its next fetch, every data-live-period ms (default 3 s). While the tab is hidden it
// backs off to HIDDEN_FACTOR times the period; when the tab is shown again it refreshes at once. After a
// failure it waits twice as long each time (up to MAX_BACKOFF_MS) until a fetch succeeds.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  var HIDDEN_FACTOR = 20;
  var MAX_BACKOFF_MS = 60000;
  var pollers = [];

  function Poller(region) {
    var timer = null;
    var inFlight = false;
    var again = false;  // asked to refresh while a fetch was running: run once more right after it
    var failures = 0;

    function period() {
      var own = parseInt(region.getAttribute("data-live-period") || "", 10);
      return own > 0 ? own : PERIOD_MS;
    }

    function delay() {
      var base = period();
      if (document.hidden) return base * HIDDEN_FACTOR;
      return failures ? Math.min(base * Math.pow(2, failures), Math.max(MAX_BACKOFF_MS, base)) : base;
    }

    function schedule(ms) {
      clearTimeout(timer);
      timer = setTimeout(run, ms);
    }

    function swap(url, html) {
      if (html === null || url !== region.getAttribute("data-live")) return;  // the filter moved on meanwhile
      if (html !== region.getAttribute("data-last")) {
        region.innerHTML = html;
        region.setAttribute("data-last", html);
      }
      region.setAttribute("data-refreshed", String(Date.now()));
    }

    function run() {
      clearTimeout(timer);
      timer = null;
      if (inFlight) { again = true; return; }
      var url = region.getAttribute("data-live");
      if (!url) return;
      inFlight = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (resp) {
          if (resp.status === 401) { window.location.href = "/dashboard/login"; return null; }
          if (!resp.ok) throw new Error("HTTP " + resp.status);
          return resp.text();
        })
        .then(function (html) { failures = 0; swap(url, html); },
              function () { failures += 1; /* gateway briefly unreachable: back off, try again */ })
        .then(finish, finish);
    }

    function finish() {
      inFlight = false;
      if (again) { again = false; run(); } else { schedule(delay()); }
    }

    return {
      start: function () { schedule(delay()); },
      now: run,  // refresh at once (or right after the fetch in flight)
      rest: function () { if (!inFlight) schedule(delay()); }  // re-time the next fetch (the tab was hidden)
    };
  }

  function startPolling() {
    document.querySelectorAll("[data-live]").forEach(function (region) {
      var poller = Poller(region);
      region.axmePoller = poller;
      pollers.push(poller);
      poller.start();
    });
    document.addEventListener("visibilitychange", function () {
      pollers.forEach(function (p) { if (document.hidden) { p.rest(); } else { p.now(); } });
    });
  }

  function wireFilter() {
    var form = document.querySelector("form[data-filter]");
    var region = document.getElementById("overview");
    if (!form || !region) return;
    var timer = null;
    function apply() {
      var params = new URLSearchParams(new FormData(form));
      region.setAttribute("data-live", "/dashboard/live/overview?" + params.toString());
      history.replaceState(null, "", "/dashboard?" + params.toString());
      if (region.axmePoller) region.axmePoller.now();
    }
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 200); });
    form.addEventListener("submit", function (ev) { ev.preventDefault(); apply(); });
  }

  function wireConfirm() {
    document.addEventListener("click", function (ev) {
      var button = ev.target.closest("button[data-confirm]");
      if (button && !window.confirm(button.getAttribute("data-confirm"))) ev.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { startPolling(); wireFilter(); wireConfirm(); });
})();
