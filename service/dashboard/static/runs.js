// The runs table: live status and progress of the shown runs that are queued or running.
"use strict";
(function () {
  const table = document.getElementById("runs-table");
  const pollUrl = "/ui/data/poll";
  const rows = () => Array.from(table.querySelectorAll("tbody tr[data-run]"));
  const active = () => rows().filter((row) => TY.ACTIVE.includes(row.dataset.status));

  const button = document.getElementById("compare-button");
  function selection() {
    const count = table.querySelectorAll('input[name="run"]:checked').length;
    button.disabled = count < 1;
  }
  table.addEventListener("change", selection);
  selection();

  if (active().length) {
    TY.poll(async () => {
      const ids = active().map((row) => row.dataset.run);
      if (!ids.length) return false;
      const data = await TY.getJSON(pollUrl + "?runs=" + ids.join(","));
      for (const run of data.runs) {
        const row = table.querySelector('tr[data-run="' + run.id + '"]');
        if (row) TY.showStatus(row, run);
      }
      return active().length > 0;
    });
  }
})();
