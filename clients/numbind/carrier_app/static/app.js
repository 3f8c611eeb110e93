// The carrier app's only script: the confirmation dialog, and the live progress in each
// number's lists. Pages work without it (a confirmation page; progress on reload); it only
// makes them nicer. Every sentence comes from the server, in the page's language.
"use strict";

(function () {
  var FAST_MS = 1000;   // while any app is still pending or with the app
  var SLOW_MS = 10000;  // when only overdue apps remain (they may still confirm)
  var RETRY_MS = 3000;  // after an error

  function newRequestId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function setupDialog() {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      return; // no <dialog>: the forms fall back to the confirmation page
    }
    var form = dialog.querySelector("form");
    var text = document.getElementById("confirm-dialog-text");
    var ok = dialog.querySelector("[data-role=ok]");
    var opener = null;

    document.addEventListener("submit", function (event) {
      var f = event.target;
      if (!f.classList || !f.classList.contains("revoke-open")) { return; }
      event.preventDefault();
      opener = f.querySelector("button");
      form.elements.number_id.value = f.elements.number.value;
      form.elements.scope.value = f.elements.scope.value;
      form.elements.platforms.value = f.elements.platforms.value;
      // One id per confirmed action: a resubmit of it is answered, not repeated.
      form.elements.request_id.value = newRequestId();
      text.textContent = f.getAttribute("data-confirm") || "";
      ok.textContent = f.getAttribute("data-ok") || ok.getAttribute("data-label");
      dialog.showModal();
      dialog.querySelector("[data-close]").focus();
    });
    dialog.querySelector("[data-close]").addEventListener("click", function () {
      dialog.close();
    });
    dialog.addEventListener("close", function () {
      if (opener) { opener.focus(); }
    });
    form.addEventListener("submit", function () {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    });
  }

  // An order reference stays on one line (the server's pages do the same).
  var REFERENCE = /\b([0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4})\b/;

  function fill(node, lines, tag) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
    lines.forEach(function (line) {
      var child = document.createElement(tag);
      line.split(REFERENCE).forEach(function (part, i) {
        if (i % 2 === 1) {
          var ref = document.createElement("span");
          ref.className = "ref";
          ref.textContent = part;
          child.appendChild(ref);
        } else if (part) {
          child.appendChild(document.createTextNode(part));
        }
      });
      node.appendChild(child);
    });
  }

  function showText(node, value) {
    if (!node) { return; }
    node.textContent = value || "";
    node.hidden = !value;
  }

  // One group's list, lead, count and retry, from the server's words.
  function renderGroup(section, data) {
    var unknown = false;
    data.apps.forEach(function (app) {
      var row = section.querySelector("li.app[data-platform='" + app.id + "']");
      if (!row) { unknown = true; return; }
      row.setAttribute("data-state", app.state);
      var badge = row.querySelector("[data-role=state]");
      badge.className = "badge state-" + (app.state || "bound").toLowerCase();
      badge.textContent = app.label;
      if (app.meta) { fill(row.querySelector("[data-role=meta]"), app.meta, "span"); }
      fill(row.querySelector("[data-role=details]"), app.details, "p");
      var unbind = row.querySelector("form[data-role=unbind]");
      if (unbind) { unbind.hidden = app.state !== ""; }
      var again = row.querySelector("form[data-role=retry]");
      if (again) { again.hidden = app.state !== "OVERDUE"; }
    });
    var lead = section.querySelector("[data-role=lead]");
    if (lead) {
      showText(lead, data.lead);
      lead.className = "lead-line tone-" + (data.tone || "none");
    }
    showText(section.querySelector("[data-role=requested]"), data.requested);
    var count = section.querySelector("[data-role=count]");
    if (count) {
      var rows = section.querySelectorAll("li.app");
      var bound = Array.prototype.filter.call(rows, function (li) {
        return li.getAttribute("data-state") !== "DONE";
      });
      count.textContent = String(bound.length);
    }
    var retry = section.querySelector("form[data-role=group-retry]");
    if (retry) {
      if (data.retry) {
        retry.elements.platforms.value = data.retry.platforms;
        retry.setAttribute("data-confirm", data.retry.confirm);
        retry.querySelector("[data-role=retry-label]").textContent = data.retry.label;
      }
      retry.hidden = !data.retry;
    }
    return unknown;
  }

  function render(card, data) {
    var unknown = false;
    Object.keys(data.groups).forEach(function (kind) {
      var section = card.querySelector("section[data-group=" + kind + "]");
      if (section && renderGroup(section, data.groups[kind])) { unknown = true; }
    });
    var banner = card.querySelector("[data-role=banner]");
    if (banner && !data.live) { banner.hidden = true; }
    card.setAttribute("data-live", data.live ? "true" : "false");
    return unknown;
  }

  function poll(card) {
    var id = card.getAttribute("data-number");
    function tick() {
      fetch("/api/numbers/" + encodeURIComponent(id), {
        headers: { "Accept": "application/json" },
        credentials: "same-origin",
        cache: "no-store"
      }).then(function (resp) {
        return resp.json().then(function (body) { return { ok: resp.ok, code: resp.status, body: body }; });
      }).then(function (r) {
        if (!r.ok) {
          if (r.code !== 401 && r.code !== 404) { setTimeout(tick, RETRY_MS); }
          return;
        }
        if (render(card, r.body)) {
          window.location.reload(); // an app this page did not list: show it properly
          return;
        }
        var overdue = card.querySelector("li.app[data-state=OVERDUE]");
        if (r.body.live) { setTimeout(tick, FAST_MS); } else if (overdue) { setTimeout(tick, SLOW_MS); }
      }).catch(function () {
        setTimeout(tick, RETRY_MS);
      });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupDialog();
    document.querySelectorAll("article.number[data-watch=true]").forEach(poll);
  });
})();
