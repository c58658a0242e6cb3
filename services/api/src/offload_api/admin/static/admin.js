// Keeps a job's page current while the job is not finished: polls its state once a second and
// reloads the page when the state changes (a served file, so the CSP needs no 'unsafe-inline').
(function () {
  "use strict";
  var job = document.getElementById("job");
  if (!job) { return; }
  var finished = ["succeeded", "failed", "cancelled", "dead"];
  var shown = job.dataset.state;
  if (finished.indexOf(shown) !== -1) { return; }
  var timer = setInterval(function () {
    fetch(job.dataset.stateUrl, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (now) {
        if (!now) { return; }
        document.getElementById("progress").textContent = now.progress.percent + " % " + (now.progress.message || "");
        if (now.state !== shown) { clearInterval(timer); window.location.reload(); }
      });
  }, 1000);
})();
