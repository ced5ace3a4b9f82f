// Dragonfly UI glue. No inline script anywhere (the CSP forbids it); this file only:
//  - sends the session's CSRF token with every htmx request,
//  - turns the server-sent event stream into DOM events that htmx parts listen to
//    (`machine-changed` for any machine, `machine-changed-<id>` for one), reconnecting
//    on its own after a server restart,
//  - keeps checked rows checked when a live refresh re-renders the table,
//  - wires the "select all" box of the machine list.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : null;

  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf;
  });

  // Remember checked boxes across swaps of the machine table.
  var checked = new Set();
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches && t.matches('input[name="ids"]')) {
      if (t.checked) checked.add(t.value); else checked.delete(t.value);
      updateBulk();
    }
    if (t.matches && t.matches("#select-all")) {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        box.checked = t.checked;
        if (t.checked) checked.add(box.value); else checked.delete(box.value);
      });
      updateBulk();
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    document.querySelectorAll('input[name="ids"]').forEach(function (box) {
      box.checked = checked.has(box.value);
    });
    updateBulk();
  });
  function updateBulk() {
    var bar = document.getElementById("bulk-count");
    if (bar) bar.textContent = checked.size ? checked.size + " selected" : "none selected";
    document.querySelectorAll("[data-needs-selection]").forEach(function (b) {
      b.disabled = checked.size === 0;
    });
  }
  document.addEventListener("htmx:afterRequest", function (e) {
    // A finished bulk action clears the selection.
    if (e.detail.elt && e.detail.elt.hasAttribute("data-clears-selection") && e.detail.successful) {
      checked.clear();
      updateBulk();
    }
  });

  // Live updates.
  if (!document.body || !document.body.hasAttribute("data-live")) return;
  var status = document.getElementById("live-status");
  function setStatus(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = "live " + cls;
  }
  function connect() {
    var es = new EventSource("/api/v1/events");
    es.addEventListener("open", function () { setStatus("live", "on"); });
    es.addEventListener("machine", function (msg) {
      var data;
      try { data = JSON.parse(msg.data); } catch (err) { return; }
      var id = (data.machine && data.machine.id) || (data.event && data.event.machine_id);
      document.body.dispatchEvent(new CustomEvent("machine-changed", { detail: data }));
      if (id) document.body.dispatchEvent(new CustomEvent("machine-changed-" + id, { detail: data }));
    });
    es.addEventListener("lagged", function () {
      document.body.dispatchEvent(new CustomEvent("machine-changed"));
    });
    es.addEventListener("error", function () {
      setStatus("reconnecting…", "off");
      // EventSource retries by itself; after a hard failure (closed), start over.
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    });
  }
  connect();
})();
