// axme_meter dashboard: live refresh of server-rendered regions, filter-as-you-type, confirm dialogs.
// The server renders (and escapes) every fragment; this script only swaps HTML it fetched from /dashboard.
(function () {
  "use strict";
  var PERIOD_MS = 3000;

  function refresh(region) {
    var url = region.getAttribute("data-live");
    if (!url || document.hidden) return Promise.resolve();
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        if (resp.status === 401) { window.location.href = "/dashboard/login"; return null; }
        return resp.ok ? resp.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== region.getAttribute("data-last")) {
          region.innerHTML = html;
          region.setAttribute("data-last", html);
        }
        region.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* gateway briefly unreachable: try again next tick */ });
  }

  function startPolling() {
    var regions = document.querySelectorAll("[data-live]");
    regions.forEach(function (region) {
      setInterval(function () { refresh(region); }, PERIOD_MS);
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
      refresh(region);
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
