// The carrier app's only script: the confirmation dialog and the live progress lists.
// Pages work without it (a confirmation page, progress on reload); it only makes them nicer.
"use strict";

(function () {
  var FAST_MS = 1000;   // while any app is still pending or delivered
  var SLOW_MS = 10000;  // when only overdue apps remain (they may still confirm)
  var RETRY_MS = 3000;  // after an error

  function setupDialog() {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      return; // no <dialog>: the forms fall back to the confirmation page
    }
    var form = dialog.querySelector("form");
    var text = document.getElementById("confirm-dialog-text");
    var opener = null;

    document.querySelectorAll("form.revoke-open").forEach(function (f) {
      f.addEventListener("submit", function (event) {
        event.preventDefault();
        opener = f.querySelector("button");
        form.elements.number_id.value = f.elements.number.value;
        form.elements.scope.value = f.elements.scope.value;
        form.elements.platform_id.value = f.elements.platform ? f.elements.platform.value : "";
        // One id per confirmed action: a resubmit of it is answered, not repeated.
        form.elements.request_id.value = newRequestId();
        text.textContent = f.getAttribute("data-confirm") || "";
        dialog.showModal();
        var cancel = dialog.querySelector("[data-close]");
        if (cancel) { cancel.focus(); }
      });
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

  function el(tag, cls, content) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (content) { node.textContent = content; }
    return node;
  }

  function newRequestId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function stepFor(list, platform) {
    var items = list.querySelectorAll("li.step");
    for (var i = 0; i < items.length; i++) {
      if (items[i].getAttribute("data-platform") === platform.id) { return items[i]; }
    }
    var li = el("li", "step");
    li.setAttribute("data-platform", platform.id);
    var dot = el("span", "step-dot");
    dot.setAttribute("aria-hidden", "true");
    li.appendChild(dot);
    li.appendChild(el("span", "step-name", platform.name));
    li.appendChild(el("span", "chip", platform.category));
    var badge = el("span", "badge");
    badge.setAttribute("data-role", "state");
    li.appendChild(badge);
    var detail = el("span", "step-detail");
    detail.setAttribute("data-role", "detail");
    li.appendChild(detail);
    list.appendChild(li);
    return li;
  }

  function render(section, data) {
    var list = section.querySelector("[data-role=list]");
    data.platforms.forEach(function (p) {
      var li = stepFor(list, p);
      li.setAttribute("data-state", p.state);
      var badge = li.querySelector("[data-role=state]");
      badge.className = "badge state-" + p.state.toLowerCase();
      badge.textContent = p.label;
      li.querySelector("[data-role=detail]").textContent = p.reason || p.note || "";
    });
    // The binding rows of the same number follow along.
    var card = section.closest("article");
    if (card) {
      data.platforms.forEach(function (p) {
        card.querySelectorAll("li.platform[data-platform='" + p.id + "'] .platform-action .badge")
          .forEach(function (badge) {
            badge.className = "badge state-" + p.state.toLowerCase();
            badge.textContent = p.label;
            badge.closest("li.platform").setAttribute("data-state", p.state);
          });
      });
    }
    section.querySelector("[data-role=summary]").textContent = data.summary;
    var status = section.querySelector("[data-role=status]");
    status.textContent = data.status;
    status.classList.toggle("is-done", data.final);
    status.classList.toggle("is-waiting", data.settled && !data.final);
    section.setAttribute("data-settled", data.settled ? "true" : "false");
  }

  function poll(section) {
    var id = section.getAttribute("data-revocation");
    function tick() {
      fetch("/api/revocations/" + encodeURIComponent(id), {
        headers: { "Accept": "application/json" },
        credentials: "same-origin",
        cache: "no-store"
      }).then(function (resp) {
        return resp.json().then(function (body) { return { ok: resp.ok, code: resp.status, body: body }; });
      }).then(function (r) {
        if (!r.ok) {
          section.querySelector("[data-role=status]").textContent = r.body.error || "";
          if (r.code !== 401 && r.code !== 404) { setTimeout(tick, RETRY_MS); }
          return;
        }
        render(section, r.body);
        if (!r.body.final) { setTimeout(tick, r.body.settled ? SLOW_MS : FAST_MS); }
      }).catch(function () {
        setTimeout(tick, RETRY_MS);
      });
    }
    tick();
  }

  function setupProgress() {
    document.querySelectorAll("section.progress[data-revocation]").forEach(function (section) {
      var states = Array.prototype.map.call(
        section.querySelectorAll("li.step"), function (li) { return li.getAttribute("data-state"); });
      var final = section.getAttribute("data-settled") === "true" &&
        states.every(function (s) { return s === "DONE" || s === "REJECTED"; });
      if (!final) { poll(section); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupDialog();
    setupProgress();
  });
})();
