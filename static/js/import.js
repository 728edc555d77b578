/* The Import page: uploads one file to POST /api/imports with a progress bar (XMLHttpRequest, since
   fetch reports no upload progress), then shows that the dashboard is reading it, then opens the new run. */
"use strict";

(function () {
  const form = document.getElementById("import-form");
  const fileInput = document.getElementById("import-file");
  const drop = document.getElementById("import-drop");
  const button = document.getElementById("import-btn");
  const progress = document.getElementById("import-progress");
  const bar = document.getElementById("import-bar");
  const fill = document.getElementById("import-bar-fill");
  const text = document.getElementById("import-progress-text");
  const errorBox = document.getElementById("import-error");
  const denied = button.dataset.denied === "1";
  let busy = false;

  const megabytes = (n) => `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;

  function refresh() {
    button.disabled = denied || busy || !fileInput.files.length;
  }

  function showProgress(fraction, message) {
    progress.hidden = false;
    if (fraction === null) {
      fill.classList.add("indeterminate");
      fill.style.width = "";
      bar.removeAttribute("aria-valuenow");
    } else {
      fill.classList.remove("indeterminate");
      fill.style.width = `${Math.round(fraction * 100)}%`;
      bar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
    }
    text.textContent = message;
  }

  function fail(message) {
    busy = false;
    refresh();
    progress.hidden = true;
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function upload(file) {
    busy = true;
    refresh();
    errorBox.hidden = true;
    const params = new URLSearchParams({ filename: file.name });
    const name = document.getElementById("import-name").value.trim();
    const source = document.getElementById("import-source").value;
    if (name) params.set("name", name);
    if (source) params.set("source", source);
    const mlflowRun = document.getElementById("import-mlflow-run").value.trim();
    if (mlflowRun) params.set("mlflow_run", mlflowRun);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/imports?${params}`);
    xhr.setRequestHeader("Accept", "application/json");
    // Sent as bytes: a trainer_state.json is not strict JSON (NaN), and the server reads the file, not JSON.
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) {
        showProgress(event.loaded / event.total, `Uploading ${megabytes(event.loaded)} of ${megabytes(event.total)}`);
      }
    };
    xhr.upload.onload = () => showProgress(null, `Uploaded ${megabytes(file.size)}; reading it and checking it for pitfalls…`);
    xhr.onerror = () => fail("The upload failed: the dashboard could not be reached. Try again.");
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
      if (xhr.status === 201 && body) {
        showProgress(1, `Imported as run ${body.id}; opening it…`);
        location.assign(`/runs/${body.id}`);
      } else if (xhr.status === 401) {
        location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
      } else {
        fail(`Not imported: ${Dash.ApiError.describe(xhr.status, body)}`);
      }
    };
    showProgress(0, `Uploading ${megabytes(file.size)}`);
    xhr.send(file);
  }

  fileInput.addEventListener("change", () => { errorBox.hidden = true; refresh(); });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (fileInput.files.length && !busy && !denied) upload(fileInput.files[0]);
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    // A dropped folder arrives as an unreadable zero-byte "file": say what to do instead of failing later.
    const entry = event.dataTransfer.items && event.dataTransfer.items.length && event.dataTransfer.items[0].webkitGetAsEntry
      ? event.dataTransfer.items[0].webkitGetAsEntry() : null;
    if (entry && entry.isDirectory) {
      fail(`${entry.name} is a folder: upload it as an archive (zip -r ${entry.name}.zip ${entry.name}/), then drop the .zip.`);
      return;
    }
    if (event.dataTransfer.files.length) {
      fileInput.files = event.dataTransfer.files;
      refresh();
    }
  });
  refresh();
})();
