// Progressive enhancement only: every page works without this file.
// 1. A page whose <main> has data-refresh-seconds reloads its #live part in place while the
//    tab is visible, and stops while it is hidden (no requests from background tabs).
// 2. Dead-letter lists get a "select all on this page" checkbox.
"use strict";

(function () {
  const main = document.querySelector("main[data-refresh-seconds]");
  if (main) {
    const seconds = Number(main.getAttribute("data-refresh-seconds")) || 5;
    let timer = null;
    const schedule = function () {
      if (timer === null && document.visibilityState === "visible") {
        timer = window.setTimeout(refresh, seconds * 1000);
      }
    };
    const refresh = async function () {
      timer = null;
      if (document.visibilityState !== "visible") return;
      try {
        const answer = await fetch(window.location.href, {
          credentials: "same-origin",
          headers: { "X-Console-Refresh": "1" },
        });
        if (answer.redirected || !answer.ok) {
          if (answer.redirected) window.location.assign(answer.url);
          return;
        }
        const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
        const next = fresh.getElementById("live");
        const live = document.getElementById("live");
        const focused = document.activeElement;
        // Do not pull a form from under someone typing in it.
        if (next && live && !(focused && live.contains(focused) && focused.form)) {
          live.replaceChildren(...next.childNodes);
        }
      } catch (error) {
        // A network blip: try again at the next tick.
      }
      schedule();
    };
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") {
        schedule();
      } else if (timer !== null) {
        window.clearTimeout(timer);
        timer = null;
      }
    });
    schedule();
  }

  const boxes = document.querySelectorAll('table.list input[type="checkbox"][name="id"]');
  const headCell = document.querySelector("table.list thead th");
  if (boxes.length > 0 && headCell) {
    const all = document.createElement("input");
    all.type = "checkbox";
    all.setAttribute("aria-label", "Select all on this page");
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
    headCell.replaceChildren(all);
  }
})();
