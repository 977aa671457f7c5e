// The console's few behaviours, attached without inline handlers (CSP: default-src 'self').
// Everything works without this file too; the server checks every rule again.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Reached the login page by a link from another site: the browser held back the
  // SameSite=Strict session cookie. Ask once more from here; if the session is alive,
  // the server sends us on to where the link pointed.
  const recheck = document.querySelector("form[data-recheck]");
  if (recheck) {
    window.location.replace(recheck.dataset.recheck);
    return;
  }

  // Visible character counters on limited text fields.
  for (const input of document.querySelectorAll("[data-counter]")) {
    const counter = document.getElementById(input.dataset.counter);
    if (!counter) continue;
    const limit = Number(input.dataset.limit);
    const update = () => {
      const count = input.value.length;
      counter.textContent = input.dataset.template
        .replace("{count}", String(count)).replace("{limit}", String(limit));
      counter.classList.toggle("over", count > limit);
    };
    input.addEventListener("input", update);
    update();
  }

  // A value is one line: Enter in a text area does not add a line break.
  for (const area of document.querySelectorAll("textarea")) {
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter") event.preventDefault();
    });
  }

  // A live send stays disabled until the word shown is typed.
  for (const input of document.querySelectorAll("[data-confirm-word]")) {
    const button = document.getElementById(input.dataset.confirmButton);
    if (!button) continue;
    const word = input.dataset.confirmWord.toLocaleLowerCase();
    const update = () => {
      button.disabled = input.value.trim().toLocaleLowerCase() !== word;
    };
    input.addEventListener("input", update);
    update();
  }

  // A form that acts (send, confirm, withdraw) is submitted once; a second click does
  // nothing (the server's idempotency key catches what gets through anyway).
  for (const form of document.querySelectorAll("form[data-once]")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "1";
      for (const button of form.querySelectorAll("button")) button.setAttribute("aria-busy", "true");
    });
  }
});
