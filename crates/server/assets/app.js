// paddock web dashboard: live status, the deploy dialog, streaming chat,
// copy buttons. Our own small script; no framework, no build step.
// Every call to the JSON API goes with the session cookie and the CSRF
// token from <meta name="csrf-token"> in the X-CSRF-Token header.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

  // ---- API calls, with one silent session refresh on 401 ----
  async function refreshSession() {
    const r = await fetch("/ui/session/refresh", {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() },
    });
    return r.ok;
  }

  async function request(method, url, body, extra = {}) {
    const opts = () => {
      const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return {
        method, credentials: "same-origin", headers,
        body: body === undefined ? undefined : JSON.stringify(body), ...extra,
      };
    };
    let r = await fetch(url, opts());
    if (r.status === 401 && (await refreshSession())) r = await fetch(url, opts());
    if (r.status === 401) {
      location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("session expired");
    }
    return r;
  }

  async function api(method, url, body) {
    const r = await request(method, url, body);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!r.ok) {
      const msg = (data && data.error && data.error.message) || `${r.status} ${r.statusText}`;
      const err = new Error(sentence(msg));
      err.status = r.status;
      err.fields = (data && data.error && data.error.fields) || [];
      throw err;
    }
    return data;
  }

  // ---- small helpers ----
  // Every error the UI shows: a capital first letter, no closing period.
  function sentence(msg) {
    const m = String(msg || "").trim().replace(/\.$/, "");
    return m.charAt(0).toUpperCase() + m.slice(1);
  }

  function toast(msg, kind = "") {
    const box = $("#toast");
    if (!box) return;
    const t = document.createElement("div");
    t.className = "toast " + kind;
    t.textContent = msg;
    box.appendChild(t);
    setTimeout(() => t.remove(), 5000);
  }

  function duration(secs) {
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    const p = (n) => String(n).padStart(2, "0");
    if (h >= 24) return `${Math.floor(h / 24)}d ${p(h % 24)}h`;
    if (h > 0) return `${h}h ${p(m)}m`;
    if (m > 0) return `${m}m ${p(s)}s`;
    return `${s}s`;
  }

  function usd(x) {
    if (!x) return "$0.00";
    return Math.abs(x) < 0.01 ? "$" + x.toFixed(4) : "$" + x.toFixed(2);
  }

  function bytes(n) {
    return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`;
  }

  function mem(mb) {
    if (mb >= 1024 && mb % 1024 === 0) return `${mb / 1024} GB`;
    if (mb >= 1024) return `${(mb / 1024).toFixed(1)} GB`;
    return `${mb} MB`;
  }

  function localTimes(root = document) {
    $$("time[datetime]", root).forEach((t) => {
      const d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) {
        t.title = d.toISOString();
        const timeStyle = t.hasAttribute("data-precise") ? "medium" : "short";
        t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle });
      }
    });
  }

  function setBusy(btn, busy, label) {
    if (!btn) return;
    if (busy) {
      btn.dataset.label = btn.innerHTML;
      btn.disabled = true;
      btn.innerHTML = '<span class="spinner" aria-hidden="true"></span>' + (label || btn.textContent);
    } else {
      btn.disabled = false;
      if (btn.dataset.label) btn.innerHTML = btn.dataset.label;
    }
  }

  async function copy(text, btn) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const ta = document.createElement("textarea");
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      document.execCommand("copy");
      ta.remove();
    }
    if (btn) {
      const old = btn.textContent;
      btn.textContent = "Copied";
      setTimeout(() => (btn.textContent = old), 1400);
    }
  }

  // ---- everywhere ----
  document.addEventListener("click", (e) => {
    const c = e.target.closest("[data-copy]");
    if (c) copy(c.dataset.copy, c);
    const nav = e.target.closest("[data-nav-toggle]");
    if (nav) $("#sidebar").classList.toggle("open");
    const tab = e.target.closest("[data-tab]");
    if (tab) {
      const box = tab.closest("[data-tabs]");
      $$("[data-tab]", box).forEach((t) => t.classList.toggle("active", t === tab));
      $$("[data-panel]", box).forEach((p) => (p.hidden = p.dataset.panel !== tab.dataset.tab));
    }
  });

  document.addEventListener("submit", (e) => {
    const f = e.target;
    if (f.dataset.confirm && !confirm(f.dataset.confirm)) {
      e.preventDefault();
      return;
    }
    if (f.hasAttribute("data-busy")) {
      const btn = $('button[type="submit"]', f);
      // Disable after the submit is under way, so the button's value posts.
      setTimeout(() => setBusy(btn, true), 0);
    }
  });

  // ---- catalog: filters and the deploy dialog ----
  function initCatalog() {
    const form = $("[data-filters]");
    if (!form) return;
    const cards = $$("[data-model-card]");
    const apply = () => {
      const q = form.q.value.trim().toLowerCase();
      const fam = form.family.value, task = form.task.value;
      let shown = 0;
      cards.forEach((c) => {
        const ok = (!q || c.dataset.search.includes(q)) &&
          (!fam || c.dataset.family === fam) &&
          (!task || c.dataset.tasks.split(" ").includes(task));
        c.hidden = !ok;
        if (ok) shown++;
      });
      $("[data-count]").textContent = `${shown} of ${cards.length} models`;
      $("[data-no-results]").hidden = shown > 0;
      const u = new URL(location.href);
      ["q", "family", "task"].forEach((k) => (form[k].value ? u.searchParams.set(k, form[k].value) : u.searchParams.delete(k)));
      history.replaceState(null, "", u);
    };
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });

    const compute = JSON.parse($("#compute-data").textContent);
    const dlg = $("#deploy-dialog");
    const dform = $("#deploy-form");
    const d = (k) => $(`[data-d="${k}"]`, dlg);
    let model = null;

    const vcpuSel = $("#d-vcpu"), memSel = $("#d-memory"), gpuSel = $("#d-gpu");
    const sizes = compute.fargate.sizes;
    // Step one: the vCPUs; step two: the memory sizes valid with them.
    [...new Set(sizes.map((s) => s.vcpu))].sort((a, b) => a - b).forEach((v) => {
      const o = document.createElement("option");
      o.value = String(v);
      o.textContent = `${v} vCPU`;
      vcpuSel.appendChild(o);
    });
    const fillMemory = (want) => {
      memSel.innerHTML = "";
      const options = sizes.filter((s) => s.vcpu === Number(vcpuSel.value));
      options.forEach((s) => {
        const o = document.createElement("option");
        o.value = String(s.memory);
        o.textContent = mem(s.memory);
        memSel.appendChild(o);
      });
      // The asked-for memory if this vCPU count offers it, else the
      // smallest the model fits in, else the largest there is.
      const pick = options.find((s) => s.memory === want) ||
        options.find((s) => s.memory >= model.cpu_memory_mb) || options[options.length - 1];
      if (pick) memSel.value = String(pick.memory);
    };
    const size = () => sizes.find((s) => s.vcpu === Number(vcpuSel.value) && s.memory === Number(memSel.value)) || sizes[0];
    const gpus = compute.gpu_instance_types.slice().sort((a, b) => a.price_per_hour_usd - b.price_per_hour_usd);
    gpus.forEach((g, i) => {
      const o = document.createElement("option");
      o.value = String(i);
      o.textContent = `${g.instance_type} · ${g.gpu_count}× ${g.gpu_type} · ${mem(g.gpu_memory_mb)} GPU · $${g.price_per_hour_usd.toFixed(3)}/h`;
      gpuSel.appendChild(o);
    });

    const FIELD_LABELS = {
      model_name: "Model", fargate_resources: "CPU size", "fargate_resources.cpu": "vCPUs",
      "fargate_resources.memory": "Memory", instance_type: "GPU", spot: "Spot",
    };
    const kind = () => dform.kind.value;
    d("spot-field").hidden = !compute.spot.available;
    const clearErrors = () => {
      d("error").hidden = true;
      $$("[data-error-for]", dlg).forEach((p) => { p.hidden = true; p.textContent = ""; });
      $$("[aria-invalid]", dlg).forEach((el) => el.removeAttribute("aria-invalid"));
    };
    const update = () => {
      const cpu = kind() === "cpu";
      d("cpu-field").hidden = !cpu;
      d("gpu-field").hidden = cpu;
      const spotOn = compute.spot.available && $("#d-spot").checked;
      let fits, need, have, price, note = "";
      if (cpu) {
        const s = size();
        need = model.cpu_memory_mb; have = s.memory; fits = have >= need;
        price = s.local_price_per_hour_usd;
        if (s.local_price_per_hour_usd !== s.price_per_hour_usd) note = ` (on Fargate ${usd(s.price_per_hour_usd)}/h)`;
      } else {
        const g = gpus[+gpuSel.value];
        need = model.gpu_memory_mb; have = g.gpu_memory_mb;
        const typeOk = model.gpu_type === "any" || model.gpu_type.toLowerCase() === g.gpu_type.toLowerCase();
        fits = have >= need && typeOk;
        price = g.price_per_hour_usd;
        if (!typeOk) note = ` — needs a ${model.gpu_type} GPU`;
      }
      const box = d("fit");
      const what = cpu ? "memory" : "GPU memory";
      box.className = "fit " + (fits ? "ok" : "bad");
      box.textContent = fits
        ? `✓ Fits: ${model.model_id} needs ${mem(need)} of ${what}; this size has ${mem(have)}.`
        : `✗ Too small: ${model.model_id} needs ${mem(need)} of ${what}; this size has ${mem(have)}${cpu ? "" : note}.`;
      if (spotOn) {
        const onDemand = cpu ? size().price_per_hour_usd : price;
        price = onDemand * (cpu ? compute.spot.fargate_fraction : compute.spot.gpu_fraction);
        note = ` (spot; on-demand ${usd(onDemand)}/h)`;
      }
      d("price").innerHTML = "";
      const main = document.createElement("span");
      main.textContent = `${usd(price)} / hour`;
      d("price").appendChild(main);
      if (cpu || spotOn) {
        const sub = document.createElement("span");
        sub.className = "price-note";
        sub.textContent = note.trim();
        if (sub.textContent) d("price").appendChild(sub);
      }
      d("submit").disabled = !fits;
      d("download").hidden = !model.download;
      if (model.download) {
        d("download").textContent = `${model.model_id} is not on this host yet: this deploy first downloads ${model.download} from the registry (the instance shows the progress), and later deploys start at once.`;
      }
    };

    document.addEventListener("click", (e) => {
      const b = e.target.closest("[data-deploy]");
      if (!b) return;
      model = JSON.parse(b.dataset.deploy);
      d("model-name").textContent = model.model_name;
      clearErrors();
      dform.kind.value = "cpu";
      $("#d-spot").checked = false;
      $("#d-name").value = "";
      $("#d-name").placeholder = `${model.model_id.replace(/[:/]/g, "-")}-… (default)`;
      // Preselect the cheapest size the model fits (the largest if none).
      const fitting = sizes.filter((s) => s.memory >= model.cpu_memory_mb)
        .sort((a, b) => a.price_per_hour_usd - b.price_per_hour_usd || a.cpu - b.cpu);
      const pick = fitting[0] || sizes[sizes.length - 1];
      vcpuSel.value = String(pick.vcpu);
      fillMemory(pick.memory);
      const gi = gpus.findIndex((g) => g.gpu_memory_mb >= model.gpu_memory_mb);
      gpuSel.value = String(Math.max(0, gi));
      if (!fitting.length && gi >= 0 && compute.driver.gpu) dform.kind.value = "gpu";
      update();
      dlg.showModal();
    });
    $$("[data-close]", dlg).forEach((b) => b.addEventListener("click", () => dlg.close()));
    vcpuSel.addEventListener("change", () => fillMemory(Number(memSel.value)));
    // A changed choice clears the error it may have caused.
    dform.addEventListener("input", clearErrors);
    dform.addEventListener("change", () => { clearErrors(); update(); });
    dform.addEventListener("submit", async (e) => {
      e.preventDefault();
      const btn = d("submit");
      const body = { model_name: model.model_id, idle_timeout_minutes: $("#d-idle").value === "" ? 0 : Number($("#d-idle").value) };
      const name = $("#d-name").value.trim();
      if (name) body.name = name;
      if (kind() === "cpu") {
        const s = size();
        body.fargate_resources = { cpu: s.cpu, memory: s.memory };
      } else {
        body.instance_type = gpus[+gpuSel.value].instance_type;
      }
      if (compute.spot.available && $("#d-spot").checked) body.spot = true;
      setBusy(btn, true, "Deploying…");
      clearErrors();
      try {
        const inst = await api("POST", "/api/models/deploy", body);
        location.href = "/ui/instances?deployed=" + encodeURIComponent(inst.instance_id);
      } catch (err) {
        // Each field's error under it; the rest in the banner.
        const rest = [];
        (err.fields.length ? err.fields : [{ field: null, message: err.message }]).forEach((f) => {
          const slot = f.field && $(`[data-error-for="${CSS.escape(f.field)}"]`, dlg);
          if (slot) {
            slot.textContent = sentence(f.message);
            slot.hidden = false;
            const input = slot.closest(".field").querySelector("input,select");
            if (input) input.setAttribute("aria-invalid", "true");
          } else {
            const label = FIELD_LABELS[f.field] || f.field;
            rest.push(sentence(label ? `${label}: ${f.message}` : f.message));
          }
        });
        if (rest.length) {
          d("error").textContent = rest.join(". ");
          d("error").hidden = false;
        }
        setBusy(btn, false);
      }
    });
  }

  // ---- instances: live status and actions ----
  const STOPPABLE = (s) => s !== "STOPPED" && s !== "STOPPING";

  function paintInstance(root, v) {
    root.dataset.status = v.status;
    const badge = $('[data-f="status"]', root);
    if (badge) {
      const label = v.status_label || v.status;
      badge.textContent = label;
      badge.className = "badge badge-" + (label.startsWith("restarting") ? "restarting" : v.status.toLowerCase());
    }
    const set = (k, text) => { const el = $(`[data-f="${k}"]`, root); if (el) el.textContent = text; };
    set("reason", v.status_reason || "");
    const line = $('[data-f="reason"].one-line', root);
    if (line) line.title = v.status_reason || "";
    set("uptime", duration(v.uptime_seconds || 0));
    set("cost", usd(v.cost_usd || 0));
    tickFrom(root, v);
    const pull = $('[data-f="pull"]', root);
    if (pull) {
      const p = v.pull;
      pull.hidden = !(p && p.total_bytes > 0);
      if (!pull.hidden) {
        const bar = $("progress", pull);
        bar.max = p.total_bytes;
        bar.value = p.completed_bytes;
        set("pull-bytes", `${bytes(p.completed_bytes)} of ${bytes(p.total_bytes)}`);
      }
    }
    const chat = $('[data-a="chat"]', root);
    if (chat) chat.hidden = v.status !== "RUNNING";
    const stop = $('[data-action="stop"]', root);
    if (stop) stop.hidden = !STOPPABLE(v.status);
    const del = $('[data-action="delete"]', root);
    if (del) del.hidden = v.status !== "STOPPED";
    const start = $('[data-action="start"]', root);
    if (start) start.hidden = !v.startable;
  }

  // Uptime and cost move on between the server's updates (every few
  // seconds): while an instance holds compute, both are counted here each
  // second from its last view, as the server counts them.
  const HOLDS_COMPUTE = ["STARTING", "RUNNING", "STOPPING"];
  const ticking = new Map();
  function tickFrom(root, v) {
    if (HOLDS_COMPUTE.includes(v.status)) ticking.set(root, { v, at: Date.now() });
    else ticking.delete(root);
  }
  setInterval(() => {
    ticking.forEach(({ v, at }, root) => {
      if (!root.isConnected) { ticking.delete(root); return; }
      const secs = (v.uptime_seconds || 0) + Math.floor((Date.now() - at) / 1000);
      const up = $('[data-f="uptime"]', root), cost = $('[data-f="cost"]', root);
      if (up) up.textContent = duration(secs);
      if (cost) cost.textContent = usd((v.price_per_hour_usd || 0) * secs / 3600);
    });
  }, 1000);

  function poll(fn, ms) {
    let timer = null;
    const tick = async () => {
      try { await fn(); } catch (err) { if (err.message !== "session expired") console.warn(err); }
      timer = setTimeout(tick, document.hidden ? ms * 3 : ms);
    };
    tick();
    return () => clearTimeout(timer);
  }

  // The caller's instances, live: from the server's event stream
  // (`GET /api/instances/events`, a list whenever one changes and every
  // few seconds), or, if the stream cannot be opened or drops, by polling
  // `GET /api/instances` every two seconds. `window.__paddockLive` says
  // which ("sse" or "poll").
  function liveInstances(all, onList) {
    const q = all ? "?all=true" : "";
    let polling = false;
    const fallBack = () => {
      if (polling) return;
      polling = true;
      window.__paddockLive = "poll";
      poll(async () => {
        const data = await api("GET", "/api/instances" + q);
        await onList(data.instances || []);
      }, 2000);
    };
    if (!window.EventSource) return fallBack();
    const es = new EventSource("/api/instances/events" + q);
    window.__paddockLive = "sse";
    es.addEventListener("instances", async (e) => {
      try { await onList(JSON.parse(e.data).instances || []); } catch (err) { console.warn(err); }
    });
    es.onerror = () => { es.close(); fallBack(); };
  }

  function initInstanceList() {
    const table = $("[data-live-instances]");
    if (!table) return;
    const all = table.dataset.liveInstances === "all";
    const tbody = $("tbody", table);
    liveInstances(all, async (list) => {
      const ids = list.map((v) => v.instance_id).sort().join(",");
      const shown = $$("tr[data-instance]", tbody).map((r) => r.dataset.instance).sort().join(",");
      if (ids !== shown) {
        const r = await request("GET", "/ui/instances/rows" + (all ? "?all=true" : ""));
        if (r.ok) {
          tbody.innerHTML = await r.text();
          table.closest(".table-card").hidden = list.length === 0;
          const empty = $(".card.empty");
          if (empty) empty.hidden = list.length > 0;
        }
      }
      list.forEach((v) => {
        const row = $(`tr[data-instance="${CSS.escape(v.instance_id)}"]`, tbody);
        if (row) paintInstance(row, v);
      });
    });
  }

  document.addEventListener("click", async (e) => {
    const b = e.target.closest("[data-action]");
    if (!b) return;
    const id = b.dataset.id;
    if (b.dataset.action === "stop") {
      if (!confirm("Stop this instance? Its compute is released.")) return;
      setBusy(b, true, "Stopping…");
      try {
        const v = await api("POST", `/api/instances/${encodeURIComponent(id)}/stop`);
        const root = b.closest("[data-instance],[data-live-instance]");
        setBusy(b, false);
        if (root) paintInstance(root, v);
        toast("Stop requested.");
      } catch (err) {
        setBusy(b, false);
        toast(err.message, "error");
      }
    } else if (b.dataset.action === "start") {
      setBusy(b, true, "Starting…");
      try {
        const v = await api("POST", `/api/instances/${encodeURIComponent(id)}/start`);
        const root = b.closest("[data-instance],[data-live-instance]");
        setBusy(b, false);
        if (root) paintInstance(root, v);
        toast("Starting: same endpoint, same keys.");
      } catch (err) {
        setBusy(b, false);
        toast(err.message, "error");
      }
    } else if (b.dataset.action === "delete") {
      if (!confirm("Delete this instance and its history?")) return;
      setBusy(b, true, "Deleting…");
      try {
        await api("DELETE", `/api/instances/${encodeURIComponent(id)}`);
        if ($("[data-live-instance]")) location.href = "/ui/instances";
        else b.closest("tr").remove();
        toast("Instance deleted.");
      } catch (err) {
        setBusy(b, false);
        toast(err.message, "error");
      }
    }
  });

  function initInstanceDetail() {
    const root = $("[data-live-instance]");
    if (!root) return;
    const id = root.dataset.liveInstance;
    const history = $('[data-f="history"]', root);
    let gone = false, seen = "";
    // The list's view of this instance paints it; its history is fetched
    // again only when the record changed.
    liveInstances(!!root.dataset.all, async (list) => {
      if (gone) return;
      const mine = list.find((x) => x.instance_id === id);
      if (!mine) { gone = true; toast("This instance no longer exists.", "error"); return; }
      paintInstance(root, mine);
      if (mine.updated_at === seen) return;
      let v;
      try { v = await api("GET", `/api/instances/${encodeURIComponent(id)}`); }
      catch (err) { if (err.status === 404) { gone = true; toast("This instance no longer exists.", "error"); } throw err; }
      seen = v.updated_at;
      paintInstance(root, v);
      if (history && Array.isArray(v.history)) {
        history.innerHTML = "";
        v.history.slice().reverse().forEach((t) => {
          const li = document.createElement("li");
          const b = document.createElement("span");
          b.className = "badge badge-" + String(t.to).toLowerCase();
          b.textContent = t.to;
          const r = document.createElement("span");
          r.className = "reason";
          r.textContent = t.reason;
          const at = document.createElement("span");
          at.className = "muted small";
          at.innerHTML = `<time datetime="${t.at}" data-precise></time>`;
          li.append(b, r, at);
          history.appendChild(li);
        });
        localTimes(history);
      }
    });

    const pre = $("[data-logs]");
    const state = $('[data-f="logs-state"]');
    const filter = $("[data-logs-filter]");
    let logsMissing = false, lines = [];
    // Only the lines with the filter's text (any case), when there is one.
    const showLines = () => {
      const q = filter ? filter.value.trim().toLowerCase() : "";
      const shown = q ? lines.filter((l) => l.toLowerCase().includes(q)) : lines;
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent = shown.length ? shown.join("\n") : lines.length ? "No line matches the filter." : "No log lines yet.";
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      return shown.length;
    };
    if (filter) filter.addEventListener("input", showLines);
    poll(async () => {
      if (logsMissing) return;
      try {
        const data = await api("GET", `/api/instances/${encodeURIComponent(id)}/logs?lines=200`);
        lines = (data && data.lines) || [];
        const shown = showLines();
        const of = shown === lines.length ? `Last ${lines.length} lines` : `${shown} of the last ${lines.length} lines`;
        state.textContent = `${of} · refreshed ${new Date().toLocaleTimeString()}`;
      } catch (err) {
        if (err.status === 404 || err.status === 405) {
          logsMissing = true;
          pre.textContent = "Logs are not available for this instance.";
          state.textContent = "";
        } else {
          state.textContent = "Could not load logs: " + err.message;
        }
      }
    }, 3000);
  }

  // ---- chat playground ----
  // Two modes: Chat (turns over /api/chat) and Complete (one text the
  // model continues, over /api/generate with raw: true). A base model (the
  // catalog says so, or the model has no chat template) opens in Complete.
  function initChat() {
    const form = $("#chat-form");
    if (!form) return;
    const log = $("#chat-log"), input = $("#c-input"), sel = $("#c-instance");
    const temp = $("#c-temp"), tempOut = $("#c-temp-out"), system = $("#c-system");
    const send = $("#chat-send"), stopBtn = $("#chat-stop"), stats = $("#chat-stats"), errBox = $("#chat-error");
    const note = $(".mode-note");
    let messages = [];
    let controller = null;
    const mode = () => $('input[name="chat-mode"]:checked').value;
    const emptyText = () => (mode() === "chat" ? "Send a message to start." : "Write the start of a text; the model continues it.");

    const clear = () => {
      messages = [];
      log.innerHTML = "";
      const p = document.createElement("p");
      p.className = "chat-empty muted";
      p.textContent = emptyText();
      log.appendChild(p);
      stats.textContent = "";
      errBox.hidden = true;
    };
    const setMode = (m) => {
      $(`input[name="chat-mode"][value="${m}"]`).checked = true;
      $$("[data-chat-only]").forEach((el) => (el.hidden = m !== "chat"));
      input.placeholder = m === "chat"
        ? "Message… (Enter to send, Shift+Enter for a new line)"
        : "Text to continue… (Enter to run, Shift+Enter for a new line)";
      send.textContent = m === "chat" ? "Send" : "Continue";
      clear();
    };
    // Picks the mode for the selected instance's model.
    let asked = 0;
    const chooseMode = async () => {
      const opt = sel.selectedOptions[0];
      const ask = ++asked;
      let base = opt.dataset.kind === "base", why = "the catalog marks it as a base model";
      if (!base && opt.dataset.status === "RUNNING") {
        try {
          const show = await api("POST", `/models/${encodeURIComponent(sel.value)}/api/show`, { model: opt.dataset.model });
          if (show && !String(show.template || "").trim()) { base = true; why = "it has no chat template"; }
        } catch (_) { /* keep Chat */ }
      }
      if (ask !== asked) return;
      note.hidden = !base;
      note.textContent = base
        ? `Complete mode: ${opt.dataset.model} is a base model (${why}); it continues text rather than answering turns. Chat still works, but expect echoes.`
        : "";
      setMode(base ? "complete" : "chat");
    };

    temp.addEventListener("input", () => (tempOut.textContent = temp.value));
    $("[data-chat-clear]").addEventListener("click", clear);
    $$('input[name="chat-mode"]').forEach((r) => r.addEventListener("change", () => setMode(mode())));
    sel.addEventListener("change", () => {
      const u = new URL(location.href);
      u.searchParams.set("instance", sel.value);
      history.replaceState(null, "", u);
      chooseMode();
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    stopBtn.addEventListener("click", () => controller && controller.abort());
    chooseMode();

    const bubble = (role, text) => {
      const empty = $(".chat-empty", log);
      if (empty) empty.remove();
      const div = document.createElement("div");
      div.className = "msg msg-" + role;
      div.textContent = text;
      log.appendChild(div);
      log.scrollTop = log.scrollHeight;
      return div;
    };

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = mode() === "chat" ? input.value.trim() : input.value;
      if (!text.trim() || controller) return;
      errBox.hidden = true;
      const chat = mode() === "chat";
      const model = sel.selectedOptions[0].dataset.model;
      const options = { temperature: Number(temp.value), num_predict: Math.max(1, Number($("#c-max").value) || 512) };
      let out, target, body, path;
      if (chat) {
        input.value = "";
        messages.push({ role: "user", content: text });
        bubble("user", text);
        out = bubble("assistant", "");
        target = out;
        path = "/api/chat";
        body = {
          model, stream: true, options,
          messages: (system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []).concat(messages),
        };
      } else {
        // One document: the text as written, then the model's continuation.
        log.innerHTML = "";
        out = bubble("completion", "");
        const prompt = document.createElement("span");
        prompt.className = "prompt";
        prompt.textContent = text;
        target = document.createElement("span");
        target.className = "continuation";
        target.dataset.test = "completion";
        out.append(prompt, target);
        path = "/api/generate";
        body = { model, stream: true, raw: true, prompt: text, options };
      }
      out.classList.add("streaming");
      controller = new AbortController();
      setBusy(send, true, "Generating…");
      stopBtn.hidden = false;
      stats.textContent = "Waiting for the model…";
      const started = performance.now();
      let firstAt = 0, chunks = 0, reply = "";
      try {
        const r = await request("POST", `/models/${encodeURIComponent(sel.value)}${path}`, body, { signal: controller.signal });
        if (!r.ok) {
          let msg = `${r.status} ${r.statusText}`;
          try { const j = await r.json(); msg = (j.error && (j.error.message || j.error)) || msg; } catch (_) { /* not JSON */ }
          throw new Error(sentence(msg));
        }
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let nl;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            const ev = JSON.parse(line);
            if (ev.error) throw new Error(sentence(ev.error.message || ev.error));
            const piece = chat ? (ev.message && ev.message.content) || "" : ev.response || "";
            if (piece) {
              if (!firstAt) firstAt = performance.now();
              chunks++;
              reply += piece;
              target.textContent = reply;
              log.scrollTop = log.scrollHeight;
              const secs = (performance.now() - firstAt) / 1000;
              if (secs > 0.2) stats.textContent = `${chunks} tokens · ${(chunks / secs).toFixed(1)} tokens/s`;
            }
            if (ev.done) {
              const n = ev.eval_count || chunks;
              const tps = ev.eval_duration ? n / (ev.eval_duration / 1e9) : n / Math.max((performance.now() - (firstAt || started)) / 1000, 0.001);
              const ttft = firstAt ? ((firstAt - started) / 1000).toFixed(2) + " s to first token · " : "";
              stats.textContent = `${n} tokens · ${tps.toFixed(1)} tokens/s · ${ttft}${((performance.now() - started) / 1000).toFixed(1)} s total`;
            }
          }
        }
        if (chat) messages.push({ role: "assistant", content: reply });
        // Complete: the box holds the whole text, ready to continue again.
        else input.value = text + reply;
      } catch (err) {
        if (err.name === "AbortError") {
          stats.textContent = "Stopped.";
          if (chat && reply) messages.push({ role: "assistant", content: reply });
          if (!chat) input.value = text + reply;
        } else {
          errBox.textContent = sentence(err.message);
          errBox.hidden = false;
          stats.textContent = "";
          if (!reply) out.remove();
          if (chat) messages.pop();
        }
      } finally {
        out.classList.remove("streaming");
        controller = null;
        setBusy(send, false);
        stopBtn.hidden = true;
        input.focus();
      }
    });
  }

  // A server-rendered form's field error goes once the field is changed:
  // it described the value that was sent, not the one being typed.
  document.addEventListener("input", (e) => {
    const field = e.target.closest && e.target.closest(".field.has-error");
    if (!field) return;
    field.classList.remove("has-error");
    $$(".field-error", field).forEach((p) => p.remove());
    e.target.removeAttribute("aria-invalid");
  });

  document.addEventListener("DOMContentLoaded", () => {
    localTimes();
    initCatalog();
    initInstanceList();
    initInstanceDetail();
    initChat();
    const deployed = new URLSearchParams(location.search).get("deployed");
    if (deployed) toast("Deploy requested. The status updates here as the instance starts.");
  });
})();
