/* The drop zone: resumable uploads with tus-js-client. Without this file the form posts plainly. */
(function () {
  "use strict";

  const form = document.querySelector("[data-upload]");
  if (!form || !window.tus || !window.tus.isSupported) return;

  const zone = form.querySelector("[data-dropzone]");
  const input = form.querySelector('input[type="file"]');
  const source = form.querySelector('input[name="source"]');
  const sourceError = document.getElementById("source-error");
  const fileError = document.getElementById("file-error");
  const list = form.querySelector("[data-uploads]");
  const summary = form.querySelector("[data-summary]");
  const unfinished = document.querySelector("[data-resumable]");
  const unfinishedList = document.querySelector("[data-resumable-list]");
  const endpoint = form.dataset.endpoint;
  const chunkSize = Number(form.dataset.chunkSize) || Infinity;
  const importsUrl = form.dataset.importsUrl.replace(/\/$/, "");
  const transfers = [];
  // A signed-in session must send its CSRF token with every tus request that changes something.
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrfHeaders = csrfMeta ? { "X-CSRFToken": csrfMeta.content } : {};

  // ---- formatting -------------------------------------------------------------------------
  function size(bytes) {
    if (bytes < 1000) return bytes + " B";
    const units = ["KB", "MB", "GB"];
    let value = bytes / 1000;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return value.toFixed(1) + " " + units[unit];
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function importUrl(id) {
    return importsUrl + "/" + encodeURIComponent(id);
  }

  // ---- the merge mode ---------------------------------------------------------------------
  function chosenMode() {
    const checked = form.querySelector('input[name="mode"]:checked');
    return checked ? checked.value : "skip";
  }

  // ---- the source field -------------------------------------------------------------------
  function sourceProblem() {
    const value = source.value.trim();
    if (!value) return "Say where these contacts come from.";
    if (value.length > 100) return "The source can be at most 100 characters long.";
    return null;
  }

  function showSourceProblem(problem) {
    sourceError.textContent = problem || "";
    sourceError.hidden = !problem;
    source.setAttribute("aria-invalid", problem ? "true" : "false");
  }

  // ---- one file being uploaded ------------------------------------------------------------
  function Transfer(file) {
    this.file = file;
    this.importId = null;
    this.samples = [];
    this.item = el("li", "upload");
    const top = el("div", "upload-top");
    top.appendChild(el("span", "upload-name", file.name));
    this.buttons = el("div", "upload-buttons");
    this.toggle = el("button", "button small", "Pause");
    this.toggle.type = "button";
    this.toggle.hidden = true;
    this.toggle.setAttribute("aria-label", "Pause " + file.name);
    this.toggle.addEventListener("click", () => (this.running ? this.pause() : this.resume()));
    this.buttons.appendChild(this.toggle);
    top.appendChild(this.buttons);
    this.bar = el("progress", "bar");
    this.bar.max = file.size || 1;
    this.bar.value = 0;
    this.bar.setAttribute("aria-label", "Upload of " + file.name);
    this.meta = el("p", "upload-meta", size(file.size) + " · waiting");
    this.meta.setAttribute("aria-live", "polite");
    this.item.append(top, this.bar, this.meta);
    list.appendChild(this.item);
    list.hidden = false;
    this.upload = new window.tus.Upload(file, {
      endpoint: endpoint,
      chunkSize: chunkSize,
      headers: csrfHeaders,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => this.progress(sent, total),
      onAfterResponse: (request, response) => {
        const id = response.getHeader("X-Import-Id");
        if (id) this.importId = id;
      },
      onSuccess: () => this.finished(),
      onError: (error) => this.interrupted(error),
    });
  }

  Transfer.prototype.start = function () {
    this.upload.findPreviousUploads().then((previous) => {
      const wanted = source.value.trim();
      // An unfinished upload of this file continues under the source it was started with.
      const match = previous.find((p) => !wanted || (p.metadata && p.metadata.source === wanted));
      if (!match && sourceProblem()) {
        this.meta.textContent = size(this.file.size) + " · waiting for a source";
        showSourceProblem(sourceProblem());
        source.focus();
        return;
      }
      this.upload.options.metadata = {
        filename: this.file.name,
        filetype: this.file.type || "application/octet-stream",
        source: match ? match.metadata.source : wanted,
        mode: match && match.metadata.mode ? match.metadata.mode : chosenMode(),
        // Each file waits for a look at how its columns are read, unless its source's saved mapping fits.
        review: "true",
      };
      if (match) {
        this.upload.resumeFromPreviousUpload(match);
        this.resumed = true;
        showUnfinished();
      }
      this.started = true;
      this.resume();
    });
  };

  Transfer.prototype.resume = function () {
    this.running = true;
    this.samples = [];
    this.item.classList.remove("failed");
    this.toggle.hidden = false;
    this.toggle.textContent = "Pause";
    this.toggle.setAttribute("aria-label", "Pause " + this.file.name);
    this.meta.textContent = size(this.bar.value) + " of " + size(this.file.size) + " · connecting…";
    this.upload.start();
  };

  Transfer.prototype.pause = function () {
    this.running = false;
    this.upload.abort();
    this.toggle.textContent = "Resume";
    this.toggle.setAttribute("aria-label", "Resume " + this.file.name);
    this.meta.textContent = size(this.bar.value) + " of " + size(this.file.size) + " · paused";
  };

  Transfer.prototype.progress = function (sent, total) {
    const now = performance.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    const first = this.samples[0];
    const seconds = (now - first[0]) / 1000;
    const speed = seconds > 0.2 ? (sent - first[1]) / seconds : 0;
    this.bar.max = total || 1;
    this.bar.value = sent;
    let text = size(sent) + " of " + size(total);
    if (speed > 0) text += " · " + size(speed) + "/s";
    this.meta.textContent = text;
  };

  // The server's own words for a refusal ({"error": "..."}), such as the storage bucket's rule.
  function serverMessage(response) {
    const body = response.getBody() || "";
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed.error === "string") return parsed.error.replace(/\.$/, "");
    } catch (e) {
      // not JSON: the body as it is
    }
    return body;
  }

  Transfer.prototype.interrupted = function (error) {
    this.running = false;
    this.item.classList.add("failed");
    const response = error.originalResponse;
    const status = response ? response.getStatus() : 0;
    let reason = "the connection was lost";
    if (status === 413) reason = serverMessage(response) || "the file is larger than the upload limit";
    else if (status >= 400 && status < 500) reason = serverMessage(response) || "the server refused it";
    else if (status >= 500) reason = "the server had a problem";
    this.meta.textContent = "Upload stopped at " + size(this.bar.value) + ": " + reason + ".";
    this.toggle.textContent = "Resume";
    this.toggle.setAttribute("aria-label", "Resume " + this.file.name);
    // Too large, or a type the store refuses: sending it again would be refused again.
    this.toggle.hidden = status === 413 || status === 415;
    this.failedWithStatus = status;
  };

  Transfer.prototype.finished = function () {
    this.running = false;
    this.toggle.hidden = true;
    this.bar.max = this.bar.value = this.file.size || 1;
    const known = this.importId ? Promise.resolve(this.importId) : this.askImportId();
    known.then((id) => {
      this.importId = id;
      this.item.classList.add("done");
      this.meta.textContent = size(this.file.size) + " uploaded · ";
      if (id) {
        const link = el("a", "", "see its import");
        link.href = importUrl(id);
        this.meta.appendChild(link);
      } else {
        this.meta.append("it shows up in the imports list shortly");
      }
      allFinished();
    });
  };

  // The last PATCH carries the import's id; if its answer was lost, the upload's HEAD has it too.
  Transfer.prototype.askImportId = function () {
    return fetch(this.upload.url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } })
      .then((r) => r.headers.get("X-Import-Id"))
      .catch(() => null);
  };

  function allFinished() {
    if (!transfers.every((t) => t.importId !== undefined && t.item.classList.contains("done"))) return;
    if (transfers.length === 1 && transfers[0].importId) {
      summary.hidden = false;
      summary.textContent = "Uploaded. Opening the import…";
      window.location.assign(importUrl(transfers[0].importId));
      return;
    }
    summary.hidden = false;
    summary.textContent =
      "All " + transfers.length + " files are uploaded. Each one whose columns are new waits for your review. ";
    const link = el("a", "", "Follow them in the imports list");
    link.href = importsUrl;
    summary.appendChild(link);
  }

  function addFiles(files) {
    fileError.hidden = true;
    summary.hidden = true;
    Array.from(files).forEach((file) => {
      if (file.size === 0) {
        fileError.textContent = file.name + " is empty, so there is nothing to import.";
        fileError.hidden = false;
        return;
      }
      const transfer = new Transfer(file);
      transfers.push(transfer);
      transfer.start();
    });
  }

  // ---- uploads left unfinished by an earlier visit ----------------------------------------
  function showUnfinished() {
    const storage = window.tus.defaultOptions.urlStorage;
    if (!unfinished || !storage) return;
    storage.findAllUploads().then((uploads) => {
      const active = new Set(transfers.filter((t) => t.started).map((t) => t.upload.url));
      const waiting = uploads.filter((u) => !active.has(u.uploadUrl) && u.metadata && u.metadata.filename);
      unfinishedList.replaceChildren();
      waiting.forEach((u) => unfinishedList.appendChild(unfinishedItem(u, storage)));
      unfinished.hidden = waiting.length === 0;
    });
  }

  function unfinishedItem(upload, storage) {
    const item = el("li", "upload");
    const top = el("div", "upload-top");
    top.appendChild(el("span", "upload-name", upload.metadata.filename));
    const forget = el("button", "button small", "Discard");
    forget.type = "button";
    forget.setAttribute("aria-label", "Discard the upload of " + upload.metadata.filename);
    forget.addEventListener("click", () => {
      storage.removeUpload(upload.urlStorageKey);
      window.tus.Upload.terminate(upload.uploadUrl, {}).catch(() => null);
      showUnfinished();
    });
    top.appendChild(forget);
    const meta = el("p", "upload-meta", size(upload.size) + " · from “" + upload.metadata.source + "”");
    item.append(top, meta);
    fetch(upload.uploadUrl, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } })
      .then((r) => {
        if (r.status === 404 || r.status === 410) {
          storage.removeUpload(upload.urlStorageKey);
          item.remove();
          if (!unfinishedList.children.length) unfinished.hidden = true;
          return;
        }
        const offset = Number(r.headers.get("Upload-Offset") || 0);
        const id = r.headers.get("X-Import-Id");
        if (id) {
          storage.removeUpload(upload.urlStorageKey);
          meta.textContent = "Uploaded · ";
          const link = el("a", "", "see its import");
          link.href = importUrl(id);
          meta.appendChild(link);
          forget.remove();
        } else {
          meta.textContent =
            size(offset) + " of " + size(upload.size) + " uploaded · from “" + upload.metadata.source + "”";
        }
      })
      .catch(() => null);
    return item;
  }

  // ---- wiring -----------------------------------------------------------------------------
  zone.classList.add("enhanced");
  zone.setAttribute("role", "button");
  zone.tabIndex = 0;
  form.querySelectorAll("[data-js-only]").forEach((node) => (node.hidden = false));
  input.multiple = true;
  input.classList.add("visually-hidden");
  input.tabIndex = -1;
  input.setAttribute("aria-hidden", "true");

  zone.addEventListener("click", (event) => {
    if (event.target !== input) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragover");
    })
  );
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, () => zone.classList.remove("dragover"))
  );
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser leave the page to show it.
  ["dragover", "drop"].forEach((name) => document.addEventListener(name, (event) => event.preventDefault()));

  input.addEventListener("change", () => {
    if (input.files.length) addFiles(input.files);
    input.value = "";
  });
  source.addEventListener("input", () => {
    if (!sourceError.hidden && !sourceProblem()) showSourceProblem(null);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const problem = sourceProblem();
    showSourceProblem(problem);
    const waiting = transfers.filter((t) => !t.started);
    if (problem) {
      source.focus();
    } else if (waiting.length) {
      waiting.forEach((t) => t.start());
    } else if (!transfers.length) {
      fileError.textContent = "Choose a file to import.";
      fileError.hidden = false;
      zone.focus();
    }
  });
  window.addEventListener("online", () => {
    transfers
      .filter((t) => t.started && !t.running && t.item.classList.contains("failed") && !t.failedWithStatus)
      .forEach((t) => t.resume());
  });
  showUnfinished();
})();
