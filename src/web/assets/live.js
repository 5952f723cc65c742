// baton web: the page's only script. Live updates by server-sent events; everything else is plain HTML
// (links and forms work without it).
"use strict";
(function () {
  // "in 4m 10s" / "3h 2m ago" next to each time, ticking.
  function span(s) {
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function tick() {
    document.querySelectorAll("time[data-at]").forEach(function (el) {
      var d = Math.round(Number(el.dataset.at) - Date.now() / 1000);
      var rel = d >= 0 ? "in " + span(d) : span(-d) + " ago";
      var abs = el.getAttribute("title") || "";
      el.textContent = rel;
      el.setAttribute("title", abs);
    });
  }
  tick();
  setInterval(tick, 1000);

  // Sections marked data-refresh are fetched again when the server says something changed (not while
  // the user types into a form of the page).
  var busy = false;
  function refresh() {
    var a = document.activeElement;
    if (busy || (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA") && a.value)) return;
    busy = true;
    fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-refresh]").forEach(function (el) {
          var fresh = el.id && doc.getElementById(el.id);
          if (fresh) el.replaceWith(fresh);
        });
        tick();
        document.dispatchEvent(new Event("baton:refreshed"));
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  if (window.EventSource) {
    var changes = new EventSource("/events");
    changes.addEventListener("change", refresh);
  }

  // A run's output as it grows. The stream ends with a run that stops; when a refresh shows the run
  // running again (resumed), it is followed again from where the page is.
  var log = document.getElementById("log");
  var src = null;
  var shown = log && log.dataset.status;
  var from = log && log.dataset.from;
  function follow() {
    if (!log || !window.EventSource || src) return;
    src = new EventSource("/runs/" + encodeURIComponent(log.dataset.run) + "/log?from=" + from);
    src.addEventListener("log", function (e) {
      var d = JSON.parse(e.data);
      var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent += d.text;
      from = d.to;
      if (stick) log.scrollTop = log.scrollHeight;
    });
    src.addEventListener("status", function (e) {
      if (e.data !== "running" && e.data !== "resuming") { src.close(); src = null; }
      if (e.data !== shown && e.data !== "resuming") { shown = e.data; refresh(); }
    });
  }
  follow();
  document.addEventListener("baton:refreshed", function () {
    var badge = document.querySelector("#head .badge");
    if (badge && badge.textContent === "running") follow();
  });

  // A detached job's log tail.
  var tail = document.getElementById("tail");
  if (tail && window.EventSource) {
    var jobs = new EventSource("/jobs/" + encodeURIComponent(tail.dataset.job) + "/log");
    jobs.addEventListener("tail", function (e) { tail.textContent = JSON.parse(e.data); });
  }
})();
