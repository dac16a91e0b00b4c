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
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return data;
  }

  // ---- small helpers ----
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

    const cpuSel = $("#d-cpu"), gpuSel = $("#d-gpu");
    compute.fargate.sizes.forEach((s, i) => {
      const o = document.createElement("option");
      o.value = String(i);
      o.textContent = `${s.vcpu} vCPU · ${mem(s.memory)}`;
      cpuSel.appendChild(o);
    });
    const gpus = compute.gpu_instance_types.slice().sort((a, b) => a.price_per_hour_usd - b.price_per_hour_usd);
    gpus.forEach((g, i) => {
      const o = document.createElement("option");
      o.value = String(i);
      o.textContent = `${g.instance_type} · ${g.gpu_count}× ${g.gpu_type} · ${mem(g.gpu_memory_mb)} GPU · $${g.price_per_hour_usd.toFixed(3)}/h`;
      gpuSel.appendChild(o);
    });

    const kind = () => dform.kind.value;
    // Fargate's price of the chosen CPU size (spot is a fraction of it).
    const s_price_cloud = () => compute.fargate.sizes[+cpuSel.value].price_per_hour_usd;
    d("spot-field").hidden = !compute.spot.available;
    const update = () => {
      const cpu = kind() === "cpu";
      d("cpu-field").hidden = !cpu;
      d("gpu-field").hidden = cpu;
      const spotOn = compute.spot.available && $("#d-spot").checked;
      let fits, need, have, price, note = "";
      if (cpu) {
        const s = compute.fargate.sizes[+cpuSel.value];
        need = model.cpu_memory_mb; have = s.memory; fits = have >= need;
        price = s.local_price_per_hour_usd;
        if (s.local_price_per_hour_usd !== s.price_per_hour_usd) note = ` (on Fargate: ${usd(s.price_per_hour_usd)}/h)`;
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
        const onDemand = cpu ? s_price_cloud() : price;
        price = onDemand * (cpu ? compute.spot.fargate_fraction : compute.spot.gpu_fraction);
        note = ` (spot; on-demand ${usd(onDemand)}/h)`;
      }
      d("price").textContent = `${usd(price)} / hour${cpu || spotOn ? note : ""}`;
      d("submit").disabled = !fits;
    };

    document.addEventListener("click", (e) => {
      const b = e.target.closest("[data-deploy]");
      if (!b) return;
      model = JSON.parse(b.dataset.deploy);
      d("model-name").textContent = model.model_name;
      d("error").hidden = true;
      dform.kind.value = "cpu";
      $("#d-spot").checked = false;
      // Preselect the cheapest size that fits.
      const ci = compute.fargate.sizes.findIndex((s) => s.memory >= model.cpu_memory_mb);
      cpuSel.value = String(Math.max(0, ci));
      const gi = gpus.findIndex((g) => g.gpu_memory_mb >= model.gpu_memory_mb);
      gpuSel.value = String(Math.max(0, gi));
      if (ci < 0 && gi >= 0) dform.kind.value = "gpu";
      update();
      dlg.showModal();
    });
    $$("[data-close]", dlg).forEach((b) => b.addEventListener("click", () => dlg.close()));
    dform.addEventListener("change", update);
    dform.addEventListener("submit", async (e) => {
      e.preventDefault();
      const btn = d("submit");
      const body = { model_name: model.model_id, idle_timeout_minutes: Number($("#d-idle").value || 0) };
      if (kind() === "cpu") {
        const s = compute.fargate.sizes[+cpuSel.value];
        body.fargate_resources = { cpu: s.cpu, memory: s.memory };
      } else {
        body.instance_type = gpus[+gpuSel.value].instance_type;
      }
      if (compute.spot.available && $("#d-spot").checked) body.spot = true;
      setBusy(btn, true, "Deploying…");
      d("error").hidden = true;
      try {
        const inst = await api("POST", "/api/models/deploy", body);
        location.href = "/ui/instances?deployed=" + encodeURIComponent(inst.instance_id);
      } catch (err) {
        d("error").textContent = err.message;
        d("error").hidden = false;
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
    const chat = $('[data-a="chat"]', root);
    if (chat) chat.hidden = v.status !== "RUNNING";
    const stop = $('[data-action="stop"]', root);
    if (stop) stop.hidden = !STOPPABLE(v.status);
    const del = $('[data-action="delete"]', root);
    if (del) del.hidden = v.status !== "STOPPED";
  }

  function poll(fn, ms) {
    let timer = null;
    const tick = async () => {
      try { await fn(); } catch (err) { if (err.message !== "session expired") console.warn(err); }
      timer = setTimeout(tick, document.hidden ? ms * 3 : ms);
    };
    tick();
    return () => clearTimeout(timer);
  }

  function initInstanceList() {
    const table = $("[data-live-instances]");
    if (!table) return;
    const all = table.dataset.liveInstances === "all";
    const tbody = $("tbody", table);
    poll(async () => {
      const data = await api("GET", "/api/instances" + (all ? "?all=true" : ""));
      const list = data.instances || [];
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
    }, 2000);
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
    let gone = false;
    poll(async () => {
      if (gone) return;
      let v;
      try { v = await api("GET", `/api/instances/${encodeURIComponent(id)}`); }
      catch (err) { if (err.status === 404) { gone = true; toast("This instance no longer exists.", "error"); } throw err; }
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
    }, 2000);

    const pre = $("[data-logs]");
    const state = $('[data-f="logs-state"]');
    let logsMissing = false;
    poll(async () => {
      if (logsMissing) return;
      try {
        const data = await api("GET", `/api/instances/${encodeURIComponent(id)}/logs?lines=200`);
        const lines = (data && data.lines) || [];
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
        pre.textContent = lines.length ? lines.join("\n") : "No log lines yet.";
        if (atBottom) pre.scrollTop = pre.scrollHeight;
        state.textContent = `Last ${lines.length} lines · refreshed ${new Date().toLocaleTimeString()}`;
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
  function initChat() {
    const form = $("#chat-form");
    if (!form) return;
    const log = $("#chat-log"), input = $("#c-input"), sel = $("#c-instance");
    const temp = $("#c-temp"), tempOut = $("#c-temp-out"), system = $("#c-system");
    const send = $("#chat-send"), stopBtn = $("#chat-stop"), stats = $("#chat-stats"), errBox = $("#chat-error");
    let messages = [];
    let controller = null;

    temp.addEventListener("input", () => (tempOut.textContent = temp.value));
    $("[data-chat-clear]").addEventListener("click", () => {
      messages = [];
      log.innerHTML = '<p class="chat-empty muted">Send a message to start.</p>';
      stats.textContent = "";
      errBox.hidden = true;
    });
    sel.addEventListener("change", () => {
      const u = new URL(location.href);
      u.searchParams.set("instance", sel.value);
      history.replaceState(null, "", u);
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    stopBtn.addEventListener("click", () => controller && controller.abort());

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
      const text = input.value.trim();
      if (!text || controller) return;
      errBox.hidden = true;
      input.value = "";
      messages.push({ role: "user", content: text });
      bubble("user", text);
      const out = bubble("assistant", "");
      out.classList.add("streaming");
      const model = sel.selectedOptions[0].dataset.model;
      const body = {
        model, stream: true,
        options: { temperature: Number(temp.value), num_predict: Math.max(1, Number($("#c-max").value) || 512) },
        messages: (system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []).concat(messages),
      };
      controller = new AbortController();
      setBusy(send, true, "Generating…");
      stopBtn.hidden = false;
      stats.textContent = "Waiting for the model…";
      const started = performance.now();
      let firstAt = 0, chunks = 0, reply = "";
      try {
        const r = await request("POST", `/models/${encodeURIComponent(sel.value)}/api/chat`, body, { signal: controller.signal });
        if (!r.ok) {
          let msg = `${r.status} ${r.statusText}`;
          try { const j = await r.json(); msg = (j.error && (j.error.message || j.error)) || msg; } catch (_) { /* not JSON */ }
          throw new Error(msg);
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
            if (ev.error) throw new Error(ev.error.message || ev.error);
            const piece = (ev.message && ev.message.content) || "";
            if (piece) {
              if (!firstAt) firstAt = performance.now();
              chunks++;
              reply += piece;
              out.textContent = reply;
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
        messages.push({ role: "assistant", content: reply });
      } catch (err) {
        if (err.name === "AbortError") {
          stats.textContent = "Stopped.";
          if (reply) messages.push({ role: "assistant", content: reply });
        } else {
          errBox.textContent = err.message;
          errBox.hidden = false;
          stats.textContent = "";
          if (!reply) out.remove();
          messages.pop();
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
