// The status board updates itself: it polls the alert's small status document every
// second and rewrites each delivery's state, attempts, link, error and retry button.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const board = document.getElementById("board");
  if (!board) return;
  const url = board.dataset.statusUrl;
  const offline = document.getElementById("offline");
  const INTERVAL = 1000;

  const setText = (element, text) => {
    if (element && element.textContent !== text) element.textContent = text;
  };

  const apply = (status) => {
    if ((status.hold || "") !== board.dataset.hold) {
      // Confirmed or withdrawn elsewhere: the buttons change, so load the page anew.
      window.location.reload();
      return;
    }
    const state = document.getElementById("alert-state");
    if (state) {
      state.className = "state state-" + status.state;
      state.dataset.state = status.state;
      setText(state, status.state_label);
    }
    for (const d of status.deliveries) {
      const row = board.querySelector(`[data-delivery="${CSS.escape(d.id)}"]`);
      if (!row) continue;
      row.dataset.state = d.state;
      const stateCell = row.querySelector('[data-field="state"]');
      stateCell.className = "state state-" + d.state;
      setText(stateCell, d.state_label);
      setText(row.querySelector('[data-field="attempts"]'), d.attempts_label);
      const link = row.querySelector('[data-field="url"]');
      if (d.url) link.href = d.url;
      link.hidden = !d.url;
      const error = row.querySelector('[data-field="error"]');
      setText(error, d.error || "");
      error.hidden = !d.error;
      const retry = row.querySelector('[data-field="retry"]');
      if (retry) retry.hidden = !d.retry;
    }
  };

  const poll = async () => {
    try {
      const response = await fetch(url, {credentials: "same-origin", cache: "no-store",
                                         headers: {"Accept": "application/json"}});
      if (response.status === 401) {
        offline.textContent = board.dataset.ended;
        offline.hidden = false;
        return;  // signed out: stop polling
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      apply(await response.json());
      offline.hidden = true;
    } catch (error) {
      offline.textContent = board.dataset.offline;
      offline.hidden = false;
    }
    window.setTimeout(poll, INTERVAL);
  };
  window.setTimeout(poll, INTERVAL);
});
