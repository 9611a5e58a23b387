// Passgate console: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Forms marked data-confirm ask before they destroy something.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  // The "check your email" page: look again in the background; move on once the sign-in has changed.
  var poll = document.body.getAttribute("data-poll");
  if (poll) {
    setInterval(function () {
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected) { location.assign(r.url); } else if (r.status !== 200) { location.reload(); }
        })
        .catch(function () { /* try again at the next tick */ });
    }, Math.max(1, Number(poll)) * 1000);
  }

  // Policy editor: a segment's checkbox for a policy is labelled with the policy's name as it is typed
  // (the checkbox itself refers to the policy by its place, so the link survives a rename either way).
  document.addEventListener("input", function (event) {
    var index = event.target.getAttribute && event.target.getAttribute("data-policy-name");
    if (index === null || index === undefined) { return; }
    document.querySelectorAll('[data-policy-label="' + index + '"]').forEach(function (label) {
      label.textContent = event.target.value;
    });
  });

  // Policy editor: each condition's operators and value control follow its field's type; leaving with
  // unsaved edits asks first; Publish is off while the form differs from the saved draft; the control the
  // server focused after Add or Remove is brought to the middle of the screen.
  var draft = document.getElementById("draft-form");
  if (draft) { policyEditor(draft); }

  function policyEditor(draft) {
    var rules = {};
    try { rules = JSON.parse(draft.getAttribute("data-rules") || "{}"); } catch (e) { rules = {}; }
    var types = rules.types || {};
    var allowed = rules.operators || {};
    var labels = rules.labels || {};
    var lists = rules.lists || [];
    var NOTE = "Save the draft first \u2014 Publish publishes the saved draft.";

    function typeOf(path) { return types[(path || "").trim()] || "any"; }

    function control(type, op) {
      if (op === "inList" || op === "notInList") { return "list"; }
      if (op === "in" || op === "notIn") { return "set"; }
      if (op === "contains" || op === "startsWith" || op === "endsWith") { return "text"; }
      if (type === "boolean" || type === "number") { return type; }
      return "text";
    }

    function option(value, text, selected) {
      var o = document.createElement("option");
      o.value = value;
      o.textContent = text;
      o.selected = !!selected;
      return o;
    }

    function retypeOperator(row) {
      var field = row.querySelector("[data-rule-field]");
      var select = row.querySelector("[data-rule-operator]");
      if (!field || !select) { return; }
      var ops = allowed[typeOf(field.value)] || [];
      var now = Array.prototype.map.call(select.options, function (o) { return o.value; });
      if (!ops.length || now.join() === ops.join()) { return; }
      var keep = ops.indexOf(select.value) >= 0 ? select.value : ops[0];
      select.textContent = "";
      ops.forEach(function (op) { select.appendChild(option(op, labels[op] || op, op === keep)); });
    }

    function retypeValue(row) {
      var field = row.querySelector("[data-rule-field]");
      var select = row.querySelector("[data-rule-operator]");
      var input = row.querySelector("[data-rule-value]");
      if (!field || !select || !input) { return; }
      var kind = control(typeOf(field.value), select.value);
      if (input.getAttribute("data-rule-value") === kind) { return; }
      var old = input.value;
      var hintId = input.id + "-hint";
      var fresh;
      if (kind === "list" || kind === "boolean") {
        fresh = document.createElement("select");
        if (kind === "list") {
          fresh.appendChild(option("", lists.length ? "Choose a list" : "No lists yet (see Lists)", false));
          lists.forEach(function (name) { fresh.appendChild(option(name, name, name === old)); });
        } else {
          fresh.appendChild(option("true", "true", old.trim().toLowerCase() === "true"));
          fresh.appendChild(option("false", "false", old.trim().toLowerCase() !== "true"));
        }
      } else {
        fresh = document.createElement("input");
        if (kind === "number") {
          fresh.type = "number";
          fresh.step = "any";
          fresh.setAttribute("inputmode", "decimal");
        } else {
          fresh.maxLength = 4000;
        }
        fresh.value = old;
      }
      fresh.id = input.id;
      fresh.name = input.name;
      fresh.setAttribute("data-rule-value", kind);
      var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
        return id && id !== hintId;
      });
      var hint = document.getElementById(hintId);
      if (kind === "set") {
        if (!hint) {
          hint = document.createElement("span");
          hint.className = "note";
          hint.id = hintId;
          hint.textContent = "Separate values with commas.";
          input.parentNode.insertBefore(hint, input.nextSibling);
        }
        described.unshift(hintId);
      } else if (hint) {
        hint.parentNode.removeChild(hint);
      }
      if (described.length) { fresh.setAttribute("aria-describedby", described.join(" ")); }
      if (input.hasAttribute("aria-invalid")) { fresh.setAttribute("aria-invalid", "true"); }
      input.parentNode.replaceChild(fresh, input);
    }

    function serialise() { return new URLSearchParams(new FormData(draft)).toString(); }
    var saved = serialise();
    var unsavedOnArrival = draft.hasAttribute("data-dirty");  // a re-rendered form that was not saved
    var submitting = false;
    var publish = document.getElementById("publish");
    var note = document.getElementById("dirty-note");
    var shown = null;

    function differs() { return unsavedOnArrival || serialise() !== saved; }

    function update() {
      var d = differs();
      if (d === shown) { return; }
      shown = d;
      if (publish) { publish.disabled = d; }
      if (note) { note.textContent = d ? NOTE : ""; }
    }

    function edited(event) {
      var row = event.target.closest && event.target.closest("[data-rule]");
      if (row && event.target.hasAttribute("data-rule-field")) { retypeOperator(row); retypeValue(row); }
      if (row && event.target.hasAttribute("data-rule-operator")) { retypeValue(row); }
      update();
    }
    draft.addEventListener("input", edited);
    draft.addEventListener("change", edited);
    draft.addEventListener("submit", function () { submitting = true; });
    window.addEventListener("pageshow", function () { submitting = false; });
    window.addEventListener("beforeunload", function (event) {
      if (submitting || !differs()) { return; }
      event.preventDefault();
      event.returnValue = "";  // older browsers ask only when this is set
    });
    update();

    var target = draft.querySelector("[autofocus]");
    if (target) {
      target.focus({ preventScroll: true });
      target.scrollIntoView({ block: "center" });
    }
  }

  // Branding: the colour picker and the hex field follow each other; the previews follow the fields as
  // they change (the page's "Preview without saving" button does the same without this script).
  var picker = document.querySelector("[data-colour-for]");
  if (picker) {
    var hex = document.getElementById(picker.getAttribute("data-colour-for"));
    var swatch = document.getElementById("b-swatch");
    picker.addEventListener("input", function () {
      hex.value = picker.value;
      hex.dispatchEvent(new Event("input", { bubbles: true }));
    });
    hex.addEventListener("input", function () {
      if (/^#[0-9a-fA-F]{6}$/.test(hex.value)) { picker.value = hex.value.toLowerCase(); }
      if (/^#([0-9a-fA-F]{3}){1,2}$/.test(hex.value) && swatch) { swatch.style.background = hex.value; }
    });
    var brandForm = hex.form;
    var previewButton = document.getElementById("preview-branding");
    var brandTimer = null;
    var brandSeq = 0;
    if (brandForm && previewButton) {
      brandForm.addEventListener("input", function () {
        clearTimeout(brandTimer);
        brandTimer = setTimeout(function () {
          var mine = ++brandSeq;
          fetch(previewButton.getAttribute("formaction"), {
            method: "POST", credentials: "same-origin", body: new FormData(brandForm)
          })
            .then(function (r) { return r.text(); })
            .then(function (html) {
              if (mine !== brandSeq) { return; }
              var next = new DOMParser().parseFromString(html, "text/html");
              ["h-previews", "b-contrast"].forEach(function (id) {
                var fresh = next.getElementById(id);
                var here = document.getElementById(id);
                var box = id === "h-previews" ? here && here.parentNode : here;
                var freshBox = id === "h-previews" ? fresh && fresh.parentNode : fresh;
                if (box && freshBox) { box.innerHTML = freshBox.innerHTML; }
              });
            })
            .catch(function () { /* offline: the button still works */ });
        }, 500);
      });
    }
  }

  // Template editor: the preview follows the text as it is typed (the Preview button still works alone).
  // While the text has errors the last good preview stays, dimmed and marked out of date; each error goes
  // beside its field, and the status line says so once (not again on every keystroke).
  var form = document.getElementById("template-form");
  if (!form) { return; }
  var url = form.getAttribute("data-preview-url");
  var frame = document.getElementById("preview-frame");
  var errors = document.getElementById("preview-errors");
  var staleLabel = document.getElementById("preview-stale");
  var previewBody = document.getElementById("preview-body");
  var status = document.getElementById("preview-status");
  var labels = { subject: "Subject", html: "HTML body", text: "Plain-text body", sms: "SMS text" };
  var stale = !!(staleLabel && !staleLabel.hidden);
  var said = "";
  var timer = null;
  var seq = 0;

  function setText(id, text) { var el = document.getElementById(id); if (el) { el.textContent = text; } }

  function announce(text) {
    if (status && text !== said) { said = text; status.textContent = text; }
  }

  function markStale(on) {
    stale = on;
    if (staleLabel) { staleLabel.hidden = !on; }
    if (previewBody) {
      previewBody.classList.toggle("is-stale", on);
      if (on) { previewBody.setAttribute("aria-describedby", "preview-stale"); }
      else { previewBody.removeAttribute("aria-describedby"); }
    }
    if (frame) { frame.title = on ? "Email preview (out of date)" : "Email preview"; }
    if (on) { setText("preview-sms-info", "Not counted: the text has errors."); }
  }

  // The part an error is about ("locales.en.sms" -> "sms"), or "" for the template as a whole.
  function partOf(error) {
    var match = /^locales\.[^.]+\.(\w+)$/.exec(error.field || "");
    return match && labels[match[1]] ? match[1] : "";
  }

  function words(error) { return (error.line ? "line " + error.line + ": " : "") + error.message; }

  // An error as the list under the preview and the announcement say it: led by its part's name.
  function described(error) {
    var part = partOf(error);
    return (part ? labels[part] + (error.line ? ", line " + error.line : "") + ": " : "") + error.message;
  }

  // Each field's error beside it (the same element the page renders after a refused save).
  function placeErrors(list) {
    form.querySelectorAll("[data-preview]").forEach(function (input) {
      var id = input.id + "-error";
      var mine = list.filter(function (e) { return partOf(e) === input.name; }).map(words);
      var note = document.getElementById(id);
      if (mine.length) {
        if (!note) {
          note = document.createElement("p");
          note.className = "field-error";
          note.id = id;
          input.insertAdjacentElement("afterend", note);
        }
        note.textContent = mine.join("; ");
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", id);
      } else {
        if (note) { note.remove(); }
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
      }
    });
  }

  function show(data) {
    errors.textContent = "";
    placeErrors([]);
    if (data.sms) {
      setText("preview-sms", data.sms.body);
      setText("preview-sms-info", data.sms.encoding + " · " + data.sms.characters + " characters · " +
        data.sms.segments + " segment" + (data.sms.segments === 1 ? "" : "s"));
    } else {
      setText("preview-subject", data.subject || "");
      setText("preview-text", data.text || "");
      if (frame) { frame.srcdoc = data.html || ""; }
    }
    if (stale) { markStale(false); announce("The preview is up to date."); }
  }

  function showErrors(problem) {
    var list = problem.errors && problem.errors.length ? problem.errors
      : [{ message: problem.detail || "The template cannot be previewed." }];
    errors.textContent = "";
    var items = document.createElement("ul");
    list.forEach(function (e) {
      var item = document.createElement("li");
      item.className = "field-error";
      item.textContent = described(e);
      items.appendChild(item);
    });
    errors.appendChild(items);
    placeErrors(list);
    markStale(true);
    announce("Preview out of date: " + list.length + (list.length === 1 ? " error. " : " errors. ") +
      list.map(described).join(" "));
  }

  function refresh() {
    var mine = ++seq;
    var body = new URLSearchParams(new FormData(form));
    fetch(url, { method: "POST", body: body, credentials: "same-origin",
                 headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (res) { if (mine === seq) { (res.ok ? show : showErrors)(res.body); } })
      .catch(function () { /* offline: the Preview button still works */ });
  }

  form.addEventListener("input", function (event) {
    if (!event.target.hasAttribute("data-preview")) { return; }
    clearTimeout(timer);
    timer = setTimeout(refresh, 350);
  });
})();
