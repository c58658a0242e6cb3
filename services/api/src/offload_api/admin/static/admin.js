// Keeps a job's page current while the job is not finished: follows the job's event stream (with a
// browser token of the job, read-only) and reloads the page when its state changes. A stream that
// fails for good (its token expired, Redis is down) reloads the page a little later, with a new
// token. A served file, so the CSP needs no 'unsafe-inline'.
(function () {
  "use strict";
  var job = document.getElementById("job");
  if (!job || !job.dataset.eventsUrl) { return; }
  var shown = job.dataset.state;
  var source = new EventSource(job.dataset.eventsUrl);
  source.addEventListener("progress", function (event) {
    var now = JSON.parse(event.data);
    document.getElementById("progress").textContent = now.progress + " % " + (now.message || "");
  });
  source.addEventListener("state", function (event) {
    if (JSON.parse(event.data).state !== shown) { source.close(); window.location.reload(); }
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) { setTimeout(function () { window.location.reload(); }, 5000); }
  };
})();
